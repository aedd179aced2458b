"""What counts as a line (LF, CRLF, CR only), and which files in the digests folder
are digests: the parser, `check`, `build`, `publish` and their -v listings."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import SAMPLE_DIGESTS

from newsletter.digest import check_paths, parse_digest, read_digest

BREAKS = {
    "\x0b": "vertical tab (U+000B)",
    "\x0c": "form feed (U+000C)",
    "\x85": "next line (U+0085)",
    "\u2028": "line separator (U+2028)",
    "\u2029": "paragraph separator (U+2029)",
    "\x1c": "file separator (U+001C)",
    "\x1d": "group separator (U+001D)",
    "\x1e": "record separator (U+001E)",
}


def digest_text(
    title="Title", abstract="Abstract.", ko="한국어 코멘트.", en="English comment.", nl="\n"
):
    return nl.join(["2025-04-04", title, "(Alice, Bob)", abstract, ko, en, "#tag"])


# --- lines ---------------------------------------------------------------------


@pytest.mark.parametrize("char", list(BREAKS))
def test_a_break_inside_the_title_is_a_space_with_one_warning(char):
    parsed = parse_digest(digest_text(title=f"XLNet{char}Is All{char}{char}You Need"), "f.txt")
    entry = parsed.digest.entries[0]
    assert entry.title == "XLNet Is All  You Need"
    assert entry.authors == ("Alice", "Bob")
    assert [str(w) for w in parsed.warnings] == [
        f"f.txt:2: {BREAKS[char]} inside the line read as a space"
    ]


def test_the_issue_cases_form_feed_title_and_line_separator_comment():
    parsed = parse_digest(digest_text(title="Scaling\fLaws", en="First half\u2028second half."))
    entry = parsed.digest.entries[0]
    assert entry.title == "Scaling Laws"
    assert entry.abstract == "Abstract."
    assert entry.comment_en == "First half second half."
    # Without a Korean comment the English one is the last line: still whole.
    parsed = parse_digest(digest_text(ko="", en="Only English\u2028continued here."))
    assert parsed.digest.entries[0].comment_en == "Only English continued here."
    assert parsed.digest.entries[0].abstract == "Abstract."


@pytest.mark.parametrize("nl", ["\n", "\r\n", "\r"])
def test_line_numbers_are_the_editors(nl):
    text = digest_text(ko="한국어\u2028코멘트\x0c끝.", en="Eng\x07lish.", nl=nl)
    parsed = parse_digest(text, "f.txt")
    assert [str(w) for w in parsed.warnings] == [
        "f.txt:5: line separator (U+2028) and form feed (U+000C) inside the line read as spaces",
        "f.txt:6: control characters removed",
    ]
    assert parsed.digest.entries[0].comment_ko == "한국어 코멘트 끝."
    bad = nl.join(["2025-04-04", "T\u2028itle", "no authors\x0cline", "#t"])
    with pytest.raises(Exception, match=r"f\.txt:3: entry 'T itle' has no authors line"):
        parse_digest(bad, "f.txt")


def test_binary_and_encoding_errors_count_cr_lines(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(b"2025-04-04\rTitle\r(A)\r\xff bad\r")
    with pytest.raises(Exception, match=r"d\.txt:4: the file is not UTF-8"):
        read_digest(path)
    path.write_bytes(b"2025-04-04\r\nTitle\r\x00")
    with pytest.raises(Exception, match=r"d\.txt:3: this is a binary file"):
        read_digest(path)


def test_check_prints_file_and_line_once(cli, tmp_path):
    path = tmp_path / "d.txt"
    path.write_text(digest_text(title="A\fB\fC"), encoding="utf-8")
    result = cli("check", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if "warning" in line]
    assert warnings == [f"  warning: {path}:2: form feed (U+000C) inside the line read as a space"]


# --- files that are not digests --------------------------------------------------

LEFTOVERS = {
    "#2025-04-04.txt#": "Emacs auto-save file",
    ".#2025-04-04.txt": "Emacs lock file",
    ".2025-04-04.txt.swp": "Vim swap file",
    ".2025-04-04.txt.swo": "Vim swap file",
    "2025-04-04.txt.swp": "Vim swap file",  # by its ending alone (not hidden)
    "2025-04-04.txt.SWO": "Vim swap file",
    "2025-04-04.txt~": "backup file",
    "2025-04-04.txt.bak": "backup file",
    "2025-04-04.TXT.BAK": "backup file",
    ".DS_Store": "macOS metadata",
    "._2025-04-04.txt": "macOS metadata",
    "Thumbs.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    "2025-06-01.txt.part": "partial download",
    "2025-06-01.txt.crdownload": "partial download",
    "2025-06-01.txt.download": "partial download",
    "digest.tmp": "temporary file",
    ".hidden": "hidden file",
}


@pytest.fixture
def messy_project(project):
    """The sample project plus the leftovers of editors, sync tools and browsers,
    each holding a copy of a real digest (so each would clash by date)."""
    folder = project / "digests"
    text = (SAMPLE_DIGESTS / "2025-04-04.txt").read_bytes()
    for name in LEFTOVERS:
        (folder / name).write_bytes(text)
    # Sub-folders are not read, wherever they sort among the files.
    for sub in ("drafts", "2025-01"):
        (folder / sub).mkdir()
        shutil.copy(SAMPLE_DIGESTS / "2025-04-04.txt", folder / sub)
    return project


def test_only_digest_files_are_read(messy_project):
    from newsletter.digest import find_digest_files

    folder = messy_project / "digests"
    found = find_digest_files([folder])
    assert [p.name for p in found.files] == ["2025-01-22.txt", "2025-04-04.txt", "2025-05-19.txt"]
    assert {s.path.name: s.reason for s in found.skipped} == LEFTOVERS
    # How `check -v` lists them.
    assert str(found.skipped[0]) == f"{folder / '#2025-04-04.txt#'} (Emacs auto-save file)"
    assert all(report.ok for report in check_paths([folder]))
    # A file named on the command line is always checked.
    assert len(check_paths([folder / "#2025-04-04.txt#"])) == 1


def test_emacs_auto_saves_are_hashes_around_a_name():
    from newsletter.digest import ignored_reason

    assert ignored_reason("#2025-04-04.txt#") == "Emacs auto-save file"
    assert ignored_reason("##") == "Emacs auto-save file"
    # A lone '#' is not "#name#": it is read (and refused by name if not a digest).
    assert ignored_reason("#") is None
    assert ignored_reason("#2025-04-04.txt") is None


def test_check_ignores_them_and_lists_them_with_v(cli, messy_project):
    quiet = cli("check", cwd=messy_project)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "3 files checked, 0 bad" in quiet.stderr
    assert "skipped" not in quiet.stdout and "#" not in quiet.stdout
    verbose = cli("check", "-v", cwd=messy_project)
    assert verbose.returncode == 0
    for name, reason in LEFTOVERS.items():
        assert f"skipped {messy_project / 'digests' / name} ({reason})" in verbose.stdout
    data = json.loads(cli("check", "--json", cwd=messy_project).stdout)
    assert len(data) == 3


def test_build_and_publish_ignore_them(cli, messy_project):
    build = cli("build", cwd=messy_project)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "skipped" not in build.stdout + build.stderr
    verbose = cli("build", "-v", cwd=messy_project)
    assert verbose.returncode == 0
    autosave = messy_project / "digests" / "#2025-04-04.txt#"
    assert f"skipped {autosave} (Emacs auto-save file)" in verbose.stdout
    publish = cli("publish", "--date", "2025-04-04", "--no-email", "-v", cwd=messy_project)
    assert publish.returncode == 0, publish.stdout + publish.stderr
    thumbs = messy_project / "digests" / "Thumbs.db"
    assert f"skipped {thumbs} (Windows thumbnail cache)" in publish.stdout
    assert (messy_project / "public/ko/2025-04-04/index.html").is_file()
