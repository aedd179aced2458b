"""Bounded input: a digest over limits.max_digest_bytes or limits.max_entries is
refused naming its file (that no email goes out over email.max_bytes is the
size guard's guarantee: tests/test_email_size.py)."""

from __future__ import annotations

import dataclasses

import pytest
from helpers import SAMPLE_DIGESTS

from newsletter.digest import format_digest, read_digest

DATE = "2025-04-04"


def write_digest(folder, entries: int, abstract_extra: int = 0) -> None:
    """A digest for DATE with `entries` entries (copies of the sample's)."""
    sample = read_digest(SAMPLE_DIGESTS / f"{DATE}.txt").digest
    pool = sample.entries
    made = [
        dataclasses.replace(pool[i % len(pool)], title=f"{pool[i % len(pool)].title} ({i})")
        for i in range(entries)
    ]
    if abstract_extra:
        made[0] = dataclasses.replace(made[0], abstract=made[0].abstract + " x" * abstract_extra)
    text = format_digest(dataclasses.replace(sample, entries=tuple(made)))
    (folder / "big.txt").write_text(text, encoding="utf-8")


@pytest.fixture
def digests(project):
    folder = project / "digests"
    for old in folder.iterdir():
        old.unlink()
    return folder


def test_too_many_entries_is_an_error_naming_the_file_and_line(cli, project, digests):
    write_digest(digests, 200)
    assert cli("check", cwd=project).returncode == 0  # the limit itself is fine
    write_digest(digests, 201)
    checked = cli("check", cwd=project)
    assert checked.returncode == 1
    assert "big.txt:" in checked.stdout
    assert "more than 200 entries: this one is entry 201 (limits.max_entries)" in checked.stdout
    published = cli("publish", "--date", DATE, "--no-email", cwd=project)
    assert published.returncode == 1
    assert "big.txt" in published.stderr and "limits.max_entries" in published.stderr
    assert "Traceback" not in published.stderr
    assert not (project / "public").exists()
    # The limit is a config key.
    with (project / "config.yaml").open("a", encoding="utf-8") as config:
        config.write("limits:\n  max_entries: 201\n")
    assert cli("check", cwd=project).returncode == 0


def test_a_file_over_max_digest_bytes_is_refused_unread(cli, project, digests):
    write_digest(digests, 4, abstract_extra=1_100_000)  # ~2.2 MB in one abstract
    size = (digests / "big.txt").stat().st_size
    assert size > 2_000_000
    checked = cli("check", "--json", cwd=project)
    assert checked.returncode == 1
    assert f"the file is {size:,} bytes, over limits.max_digest_bytes (2,000,000)" in checked.stdout
    published = cli("publish", "--date", DATE, cwd=project)
    assert published.returncode == 1
    assert "big.txt" in published.stderr and "Traceback" not in published.stderr
    with (project / "config.yaml").open("a", encoding="utf-8") as config:
        config.write("limits:\n  max_digest_bytes: 3000000\n")
    assert cli("check", cwd=project).returncode == 0


def test_reading_stops_at_the_limit(tmp_path):
    from newsletter.errors import DigestError
    from newsletter.model import DigestLimits

    path = tmp_path / "huge.txt"
    path.write_bytes(b"2025-04-04\n" + b"x" * 5000)
    with pytest.raises(DigestError, match=r"5,011 bytes, over limits.max_digest_bytes \(5,000\)"):
        read_digest(path, DigestLimits(max_bytes=5000))
    assert read_digest(SAMPLE_DIGESTS / f"{DATE}.txt", DigestLimits(max_bytes=20_000)).digest
