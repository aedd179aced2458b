"""A damaged database, a read-only folder, a full disk: one clear line, never a
traceback; what was written stays whole, the ledger consistent, and a rerun
after the fix finishes the job.

Real parts: real SQLite files damaged as disks and people damage them
(garbage, truncated, a wrecked page), and real small file systems (a tmpfs
of a few hundred kilobytes mounted for the test: `real_parts.small_filesystem`,
which needs root) under paths.public, paths.outbox and paths.state.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import real_parts
from helpers import run_cli
from smtp_servers import Handler, smtp_project, start_server

from newsletter.store import Store
from newsletter.store.database import Database

DATE = "2025-04-04"
SECRET = {"NEWSLETTER_SECRET": "damage-test-secret-0123456789"}


# --- real small file systems ----------------------------------------------------------


def small_fs(path: Path, size: str):
    """A tmpfs of `size` ("512k", "4m") on `path`, through tests/real_parts.py."""
    kb = int(size[:-1]) * (1024 if size.endswith("m") else 1)
    return real_parts.small_filesystem(path, size_kb=kb)


def remount(path: Path, options: str) -> None:
    """Remount the small file system on `path` (e.g. "ro", "size=4m")."""
    mount = real_parts.program("mount", "mount")
    subprocess.run([str(mount), "-o", f"remount,{options}", str(path)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system holding `folder` to the last byte; returns the filler."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        block = b"\0" * 4096
        while True:
            try:
                os.write(fd, block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
    finally:
        os.close(fd)
    return filler


def one_error(stderr: str) -> str:
    """The single 'error:' line of a failed command (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "  hint: " in stderr
    return errors[0]


def whole_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- a damaged database ------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _wrecked_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096 : 4096 + 12] = b"\xff" * 12  # the b-tree header of the second page
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _wrecked_page])
def test_a_damaged_database_is_one_line_and_a_restore_finishes(cli, project, damage):
    add = cli("subscribers", "add", "reader@example.org", "--edition", "both", cwd=project)
    assert add.returncode == 0, add.stderr
    db = project / "state" / "newsletter.db"
    with Store(Database(f"sqlite:///{db}")) as store:  # enough rows for several pages
        store.subscribers.add_many((f"r{i}@example.org", "ko", "n" * 100) for i in range(300))
    backup = project / "backup.db"
    shutil.copy(db, backup)
    damage(db)

    for command in (
        ("subscribers", "list"),
        ("subscribers", "add", "new@example.org"),
        ("status",),
        ("publish", "--date", DATE, "--force"),
    ):
        result = cli(*command, cwd=project)
        assert result.returncode == 1, (command, result.stderr)
        line = one_error(result.stderr)
        assert f"the database {db} is damaged" in line, line
        assert "restore it from a backup" in result.stderr
    assert not list((project / "outbox").rglob("*.eml"))  # nothing went out
    debug = cli("--debug", "subscribers", "list", cwd=project)
    assert debug.returncode == 1 and "Traceback" in debug.stderr

    shutil.copy(backup, db)  # the fix: restore the backup
    published = cli("publish", "--date", DATE, "--force", cwd=project)
    assert published.returncode == 0, published.stderr
    assert len(list((project / "outbox" / DATE).glob("*.eml"))) == 301
    again = cli("publish", "--date", DATE, "--force", cwd=project)
    assert "0 sent" in again.stdout and "301 skipped" in again.stdout


# --- a read-only public folder ----------------------------------------------------------


def test_a_read_only_public_folder_is_one_line_and_nothing_is_sent(cli, project):
    assert cli("subscribers", "add", "reader@example.org", cwd=project).returncode == 0
    public = project / "public"
    with contextlib.ExitStack() as stack:
        if os.geteuid() == 0:  # root writes through permissions: a read-only mount
            stack.enter_context(small_fs(public, "4m"))
            remount(public, "ro")
        else:
            public.mkdir()
            public.chmod(0o555)
            stack.callback(public.chmod, 0o755)
        result = cli("publish", "--date", DATE, "--force", cwd=project)
        assert result.returncode == 1
        line = one_error(result.stderr)
        assert line.startswith(f"error: cannot write {public}/")
        assert "Read-only file system" in line or "Permission denied" in line
        assert not list((project / "outbox").rglob("*.eml"))  # the site comes first
        if os.geteuid() == 0:
            remount(public, "rw")
        else:
            public.chmod(0o755)
        fixed = cli("publish", "--date", DATE, "--force", cwd=project)
        assert fixed.returncode == 0, fixed.stderr
        assert (public / "ko" / DATE / "index.html").exists()
    assert len(list((project / "outbox" / DATE).glob("*.eml"))) == 1


# --- full disks ---------------------------------------------------------------------------


def test_a_full_disk_under_public_keeps_every_file_whole(cli, project):
    assert cli("subscribers", "add", "reader@example.org", cwd=project).returncode == 0
    with small_fs(project / "public", "8m") as public:
        first = cli("publish", "--date", DATE, "--no-email", cwd=project)
        assert first.returncode == 0, first.stderr
        before = whole_files(public)
        filler = fill(public)
        digest = project / "digests" / f"{DATE}.txt"
        digest.write_text(
            digest.read_text(encoding="utf-8").replace("MegaMath", "GigaMath", 1),
            encoding="utf-8",
        )
        full = cli("publish", "--date", DATE, "--force", cwd=project)
        assert full.returncode == 1
        line = one_error(full.stderr)
        assert line.startswith(f"error: cannot write {public}/")
        assert line.endswith("No space left on device")
        assert "is full: free some space" in full.stderr
        filler.unlink()
        after = whole_files(public)
        # Every file is the old one or the new one, never a part; no temp files left.
        assert set(after) == set(before)
        assert not [name for name in after if name.endswith(".tmp")]
        assert not list((project / "outbox").rglob("*.eml"))
        fixed = cli("publish", "--date", DATE, "--force", cwd=project)
        assert fixed.returncode == 0, fixed.stderr
        assert "GigaMath" in (public / "en" / DATE / "index.html").read_text(encoding="utf-8")
    assert len(list((project / "outbox" / DATE).glob("*.eml"))) == 1


def test_a_full_outbox_stops_the_run_and_a_rerun_finishes(cli, project):
    with Store.open(_config(project)) as store:
        store.subscribers.add_many((f"reader{i:02d}@example.org", "both", "") for i in range(40))
    with small_fs(project / "outbox", "512k") as outbox:
        full = cli("publish", "--date", DATE, "--force", cwd=project)
        assert full.returncode == 1
        line = one_error(full.stderr)
        assert line.startswith(f"error: delivery stopped: cannot write {outbox}/{DATE}/")
        assert "No space left on device" in line
        written = sorted((outbox / DATE).glob("*.eml"))
        assert 0 < len(written) < 40
        assert not list(outbox.rglob("*.tmp"))
        for path in written:  # each file whole: a complete message that parses
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert message.get_body(("html",)).get_content().rstrip().endswith("</html>")
        with Store.open(_config(project)) as store:
            rows = store.ledger.deliveries_for(_date())
        sent = {f"{d.email}.eml" for d in rows if d.state == "sent"}
        assert sent == {p.name for p in written}  # the ledger says what is on disk
        remount(outbox, "size=4m")
        fixed = cli("publish", "--date", DATE, "--force", cwd=project)
        assert fixed.returncode == 0, fixed.stderr
        assert f"{40 - len(written)} sent" in fixed.stdout
        assert len(list((outbox / DATE).glob("*.eml"))) == 40


def test_a_full_state_disk_sends_nothing_and_a_rerun_sends_everyone_once(tmp_path):
    handler = Handler()
    with start_server(handler) as server, small_fs(tmp_path / "state", "1m") as state:
        config = smtp_project(tmp_path, server, 30)
        filler = fill(state)
        publish = ("--config", str(config), "publish", "--date", DATE, "--force")
        full = run_cli(*publish, env=SECRET)
        assert full.returncode == 1
        line = one_error(full.stderr)
        assert f"cannot write the database {state / 'newsletter.db'}" in line
        assert "full" in line
        assert handler.messages == []
        filler.unlink()
        fixed = run_cli(*publish, env=SECRET)
        assert fixed.returncode == 0, fixed.stderr
    assert handler.count_by_recipient() == {f"reader{i}@example.org": 1 for i in range(30)}


def test_a_state_disk_filling_up_mid_send_repeats_only_the_unrecorded_few(tmp_path):
    # The ledger's disk fills while messages go out: the group commit that
    # fails (and what is in flight on each connection) was accepted by the
    # server but cannot be recorded, so only those can go out twice.
    handler = Handler(delay=0.005)
    with start_server(handler) as server, small_fs(tmp_path / "state", "2m") as state:
        config = smtp_project(tmp_path, server, 300)
        filler = fill(state)
        # Room for the plan's pending rows and some commits, not for all of them.
        os.truncate(filler, filler.stat().st_size - 200 * 1024)
        publish = ("--config", str(config), "publish", "--date", DATE, "--force")
        full = run_cli(*publish, env=SECRET)
        assert full.returncode == 1
        assert f"cannot write the database {state / 'newsletter.db'}" in one_error(full.stderr)
        before = len(handler.messages)
        assert 0 < before < 300, "the disk did not fill mid-send"
        filler.unlink()
        fixed = run_cli(*publish, env=SECRET)
        assert fixed.returncode == 0, fixed.stderr
    counts = handler.count_by_recipient()
    duplicates = sum(n - 1 for n in counts.values())
    print(f"state disk full after {before} messages: 0 lost, {duplicates} duplicated")
    assert set(counts) == {f"reader{i}@example.org" for i in range(300)}  # nobody lost
    # Exactly the messages the run said it accepted but could not record.
    unrecorded = re.search(
        r"\((\d+) accepted by the server: a rerun sends those again", full.stderr
    )
    assert unrecorded, full.stderr
    assert duplicates == int(unrecorded.group(1))


def _config(project: Path):
    from newsletter.config import load_config

    return load_config(project / "config.yaml")


def _date():
    import datetime as dt

    return dt.date.fromisoformat(DATE)
