"""`newsletter publish` and `build` through the real CLI: the site and feeds side."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

import feedparser
import pytest


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_publish_one_date_on_a_fresh_site(cli, project):
    result = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert result.returncode == 0, result.stderr
    public = project / "public"
    for edition in ("ko", "en", "both"):
        assert (public / edition / "2025-04-04" / "index.html").is_file()
        # Only the published date is listed: no link to pages never written.
        index = (public / edition / "index.html").read_text(encoding="utf-8")
        assert "2025-04-04/" in index and "2025-05-19/" not in index
        feed = feedparser.parse((public / "feeds" / edition / "atom.xml").read_bytes())
        assert feed.bozo == 0 and len(feed.entries) == 1
    assert not (public / "ko" / "2025-05-19").exists()
    landing = (public / "index.html").read_text(encoding="utf-8")
    assert '<a href="https://example.org/papers/subscribe">이메일로 받아보기 (구독)</a>' in landing
    ko_page = (public / "ko" / "2025-04-04" / "index.html").read_text(encoding="utf-8")
    assert "2025년 4월 4일" in ko_page and "수학 및 코드 데이터 371B" in ko_page
    assert "published 2025-04-04" in result.stdout
    files = [p for p in public.rglob("*") if p.is_file() and p.name != ".newsletter-manifest.json"]
    assert f"site: wrote {len(files)} files" in result.stdout and "  wrote " not in result.stdout

    again = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert "site: wrote 0 files" in again.stdout


def test_incremental_publish_leaves_other_issues_untouched(cli, project):
    assert cli("build", cwd=project).returncode == 0
    old_page = project / "public" / "ko" / "2025-01-22" / "index.html"
    before = old_page.stat().st_mtime_ns
    (project / "digests" / "2025-05-19.txt").write_text(
        (project / "digests" / "2025-05-19.txt")
        .read_text(encoding="utf-8")
        .replace("MegaScale-MoE:", "MegaScale-MoE (v2):"),
        encoding="utf-8",
    )
    result = cli("publish", "--date", "2025-05-19", "--no-email", "--verbose", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "wrote ko/2025-05-19/index.html" in result.stdout
    assert "2025-01-22/index.html" not in result.stdout
    assert old_page.stat().st_mtime_ns == before
    assert "MegaScale-MoE (v2):" in (project / "public" / "ko" / "index.html").read_text(
        encoding="utf-8"
    )


def test_build_is_deterministic(cli, project, tmp_path):
    assert cli("build", cwd=project).returncode == 0
    other = tmp_path / "other"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns("public"))
    assert cli("build", cwd=other).returncode == 0
    assert tree(project / "public") == tree(other / "public")
    assert not filecmp.dircmp(project / "public", other / "public").diff_files


def test_dry_run_writes_nothing(cli, project):
    result = cli("publish", "--date", "2025-04-04", "--dry-run", "--no-email", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "would write ko/2025-04-04/index.html" in result.stdout
    assert "nothing was written or sent" in result.stdout
    assert not (project / "public").exists()


def test_no_digest_for_the_date(cli, project):
    result = cli("publish", "--date", "2025-04-05", "--no-email", cwd=project)
    assert result.returncode == 1
    assert "no digest dated 2025-04-05" in result.stderr
    assert "hint: the date comes from each file's first line" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "public").exists()


def test_bad_digest_for_the_date_publishes_nothing(cli, project):
    shutil.copy(project / "digests" / "2025-04-04.txt", project / "digests" / "copy.txt")
    result = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert result.returncode == 1
    assert "cannot be published" in result.stderr
    assert "copy.txt:1: another digest has the same date 2025-04-04" in result.stderr
    assert not (project / "public").exists()


def test_build_skips_bad_files_and_publishes_good_ones(cli, project):
    (project / "digests" / "broken.txt").write_text("2025년 2월 30일\n", encoding="utf-8")
    result = cli("build", cwd=project)
    assert result.returncode == 1
    assert "broken.txt:1: impossible date '2025년 2월 30일'" in result.stderr
    assert (project / "public" / "en" / "2025-05-19" / "index.html").is_file()


@pytest.mark.parametrize("value", ["April 4", "2025-W14", "20250404"])
def test_bad_date_option_is_a_usage_error(cli, project, value):
    # A week (the weekly email's name) is never read as its Monday.
    result = cli("publish", "--date", value, cwd=project)
    assert result.returncode == 2
    assert f"'{value}' is not a date like 2025-04-04" in result.stderr
    assert not (project / "outbox").exists()
