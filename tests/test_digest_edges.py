"""The digest parser at the edges that mutation testing found untested: how the
body splits into abstract and comments, authors lines with odd parentheses,
duplicate dates in any order, files that are not digests or cannot be read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsletter.digest import check_paths, find_digest_files, parse_digest, read_digest
from newsletter.errors import DigestError
from newsletter.model import DigestLimits

DATE = "2025년 4월 4일"


def entry(*body: str, authors: str = "(Alice Kim, Bob Lee)", title: str = "A Paper") -> str:
    return "\n".join([title, authors, *body, "#tag"])


def one(*body: str, **kw: str):
    parsed = parse_digest(f"{DATE}\n{entry(*body, **kw)}\n", "d.txt")
    (only,) = parsed.digest.entries
    return only


def body(e) -> tuple[str, str, str]:
    return e.abstract, e.comment_ko, e.comment_en


# --- the body: abstract, Korean comment, English comment --------------------------


def test_without_korean_a_long_abstract_keeps_every_line():
    e = one("First line", "second line,", "third line.", "Fourth line.", "An English comment.")
    assert body(e) == (
        "First line second line, third line. Fourth line.",
        "",
        "An English comment.",
    )


def test_without_korean_a_single_line_is_the_abstract():
    assert body(one("Only an abstract.")) == ("Only an abstract.", "", "")


def test_without_korean_two_lines_are_abstract_and_english_comment():
    assert body(one("The abstract.", "The comment.")) == ("The abstract.", "", "The comment.")


def test_without_korean_a_trailing_url_fragment_stays_in_the_abstract():
    e = one("The abstract, see", "https://example.org/paper", ".")
    assert body(e) == ("The abstract, see https://example.org/paper.", "", "")


def test_a_korean_comment_of_two_consecutive_lines():
    e = one("Abstract.", "첫째 줄입니다.", "둘째 줄입니다.", "English comment.")
    assert body(e) == ("Abstract.", "첫째 줄입니다. 둘째 줄입니다.", "English comment.")


def test_a_korean_comment_of_two_lines_with_a_url_between():
    e = one("Abstract.", "첫째 줄", "https://example.org/x", "둘째 줄.", "English.")
    assert body(e) == ("Abstract.", "첫째 줄 https://example.org/x 둘째 줄.", "English.")


def test_a_hangul_word_in_a_later_english_line_stays_english():
    e = one(
        "Abstract.",
        "한국어 코멘트.",
        "The English comment.",
        "It mentions 트랜스포머 once.",
    )
    assert body(e) == (
        "Abstract.",
        "한국어 코멘트.",
        "The English comment. It mentions 트랜스포머 once.",
    )


def test_korean_first_then_english():
    assert body(one("한국어 코멘트만.", "English.")) == ("", "한국어 코멘트만.", "English.")


def test_without_korean_a_url_line_before_the_english_comment_stays_in_the_abstract():
    e = one("The abstract, see", "https://example.org/paper", "The English comment.")
    assert body(e) == (
        "The abstract, see https://example.org/paper",
        "",
        "The English comment.",
    )


def test_a_line_starting_with_a_letter_joins_with_a_space():
    e = one("We compare", "XGBoost and", "Xavier init.", "한국어.", "English.")
    assert e.abstract == "We compare XGBoost and Xavier init."


def test_punctuation_joins_without_a_space():
    e = one("Ends with", "),", "]", "}", ";", ":", "!", "?", "next", "The comment.")
    assert e.abstract == "Ends with),]};:!? next"


# --- authors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("(Alice Kim, Bob Lee)", ("Alice Kim", "Bob Lee")),
        ("(Alice (A (B)), Bob)", ("Alice (A (B))", "Bob")),
        ("(Alice (Lab, Univ), Bob)", ("Alice (Lab, Univ)", "Bob")),
        ("( Alice ,  , Bob ,)", ("Alice", "Bob")),
        ("(김철수, 이영희)", ("김철수", "이영희")),
        ("()", ()),
    ],
)
def test_authors_split_on_top_level_commas(line, names):
    assert one("Abstract.", authors=line).authors == names


@pytest.mark.parametrize("line", ["(Alice Kim, Bob Lee", "Alice Kim, Bob Lee)", "Alice Kim"])
def test_a_half_bracketed_authors_line_is_no_authors_line(line):
    with pytest.raises(DigestError) as error:
        parse_digest(f"{DATE}\n{entry('Abstract.', authors=line)}\n", "d.txt")
    assert error.value.line == 3
    assert error.value.bare_message == (f"entry 'A Paper' has no authors line (found {line!r})")


@pytest.mark.parametrize("line", ["(A), (B)", "(Alice (x, Bob)", "(Alice x), Bob)", "((A)"])
def test_unbalanced_parentheses_inside_are_an_error(line):
    with pytest.raises(DigestError) as error:
        parse_digest(f"{DATE}\n{entry('Abstract.', authors=line)}\n", "d.txt")
    assert error.value.line == 3
    assert error.value.bare_message == "unbalanced parentheses in the authors line"


# --- folders and files ----------------------------------------------------------------


def write(folder: Path, name: str, date: str) -> Path:
    path = folder / name
    path.write_text(f"{date}\n{entry('Abstract.')}\n", encoding="utf-8")
    return path


def test_duplicate_dates_found_when_a_single_date_comes_first(tmp_path):
    write(tmp_path, "a.txt", "2025-01-01")
    write(tmp_path, "b.txt", "2025-04-04")
    write(tmp_path, "c.txt", "2025-04-04")
    write(tmp_path, "d.txt", "2025-05-05")
    write(tmp_path, "e.txt", "2025-05-05")
    reports = {Path(r.file).name: r for r in check_paths([tmp_path])}
    assert reports["a.txt"].ok and reports["a.txt"].errors == ()
    assert [str(p) for p in reports["b.txt"].errors] == [
        f"{tmp_path / 'b.txt'}:1: another digest has the same date 2025-04-04: {tmp_path / 'c.txt'}"
    ]
    assert [p.message for p in reports["c.txt"].errors] == [
        f"another digest has the same date 2025-04-04: {tmp_path / 'b.txt'}"
    ]
    assert not reports["d.txt"].ok and not reports["e.txt"].ok
    # The clashing digests are kept, so callers can say which date clashed.
    assert reports["c.txt"].digest.date == dt.date(2025, 4, 4)


def test_three_files_with_one_date_each_name_the_other_two(tmp_path):
    for name in ("x.txt", "y.txt", "z.txt"):
        write(tmp_path, name, "2025-04-04")
    reports = {Path(r.file).name: r for r in check_paths([tmp_path])}
    assert (
        reports["y.txt"].errors[0].message.endswith(f": {tmp_path / 'x.txt'}, {tmp_path / 'z.txt'}")
    )


def test_a_tilde_inside_a_name_is_not_a_backup(tmp_path):
    # (Every kind of leftover file: test_lines_and_files.py.)
    write(tmp_path, "2025-04-04.txt", "2025-04-04")
    write(tmp_path, "2025-04-04.txt~", "2025-04-04")  # an editor's backup
    write(tmp_path, "notes~draft.txt", "2025-05-05")
    found = find_digest_files([tmp_path])
    assert [p.name for p in found.files] == ["2025-04-04.txt", "notes~draft.txt"]
    assert [(s.path.name, s.reason) for s in found.skipped] == [("2025-04-04.txt~", "backup file")]
    assert all(r.ok for r in check_paths([tmp_path]))


def test_reading_a_missing_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DigestError) as error:
        read_digest(missing)
    assert (error.value.file, error.value.line) == (str(missing), None)
    assert error.value.bare_message == "cannot read the file: No such file or directory"
    (report,) = check_paths([missing])
    assert not report.ok and report.digest is None
    assert [str(p) for p in report.errors] == [
        f"{missing}: cannot read the file: No such file or directory"
    ]


def test_reading_a_folder_given_as_a_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "2025-04-04.txt"
    folder.mkdir()
    with pytest.raises(DigestError) as error:
        read_digest(folder)
    assert error.value.bare_message == "cannot read the file: Is a directory"


def test_an_unreadable_file_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    path = write(tmp_path, "secret.txt", "2025-04-04")
    path.chmod(0)
    code = (
        "import sys\n"
        "from newsletter.digest import read_digest\n"
        "from newsletter.errors import DigestError\n"
        "try:\n"
        "    read_digest(sys.argv[1])\n"
        "except DigestError as e:\n"
        "    print(e.bare_message)\n"
    )
    # As root nothing is unreadable: read as nobody (setpriv from util-linux).
    run_as = []
    if os.geteuid() == 0:
        import real_parts

        setpriv = real_parts.program("setpriv", "util-linux")
        run_as = [str(setpriv), "--reuid=65534", "--regid=65534", "--clear-groups"]
    tmp_path.chmod(0o755)
    done = subprocess.run(
        [*run_as, sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    assert done.stdout.strip() == "cannot read the file: Permission denied", done.stderr


# --- writing a digest -------------------------------------------------------------------


def test_format_digest_writes_the_file_format_exactly():
    from newsletter.digest import format_digest
    from newsletter.model import Digest, Entry

    digest = Digest(
        dt.date(2025, 4, 4),
        (
            Entry("Title", ("Alice", "Bob (B)"), "Abstract.", "한국어.", "English.", ("a", "b")),
            Entry("Second", ("Kim",), "", "", "Only English.", ("c",)),
        ),
        "d.txt",
    )
    assert format_digest(digest) == (
        "2025년 4월 4일\n"
        "Title\n(Alice, Bob (B))\nAbstract.\n한국어.\nEnglish.\n#a #b\n"
        "Second\n(Kim)\nOnly English.\n#c"
    )


# --- every error says exactly what and how to fix it ----------------------------------

DATE_HINT = "a digest starts with a date line such as '2025년 4월 4일'"
ENTRY_HINT = "each entry is: title, (authors), abstract, Korean comment, English comment, #tags"
AUTHORS_HINT = "the line after the title lists the authors in parentheses: (Name, Name)"


@pytest.mark.parametrize(
    ("data", "line", "message", "hint"),
    [
        (b"", None, "the file is empty", DATE_HINT),
        (
            b"\x89PNG\r\n\x1a\n\x00",
            3,
            "this is a binary file, not a digest (it has NUL bytes)",
            "digests are UTF-8 text files",
        ),
        (
            b"2025-04-04\n\xff",
            2,
            "the file is not UTF-8 text",
            "save it as UTF-8 (e.g. iconv -f cp949 -t utf-8 FILE)",
        ),
        (
            b"Title first\n(A)\n",
            1,
            "expected the date line, found 'Title first'",
            "the first line is the issue date: '2025년 4월 4일' or '2025-04-04'",
        ),
        (
            b"2025-02-30\nT\n(A)\nx\n#t\n",
            1,
            "impossible date '2025-02-30': day is out of range for month",
            None,
        ),
        (b"2025-04-04\n", 1, "no entries after the date line", ENTRY_HINT),
        (
            b"2025-04-04\n#orphan\n",
            2,
            "a tag line with no entry before it",
            "an entry is: title, (authors), abstract, comments, then its #tags",
        ),
        (
            b"2025-04-04\nTitle\n#t\n",
            3,
            "entry 'Title' has no authors line (found the tag line)",
            AUTHORS_HINT,
        ),
        (
            b"2025-04-04\nTitle\n(A)\nabstract\n",
            2,
            "the entry starting here ('Title') has no tag line",
            "end every entry with a line of tags such as '#moe #efficiency'",
        ),
        (
            b"2025-04-04\nTitle\n(A, (B)\nx\n#t\n",
            3,
            "unbalanced parentheses in the authors line",
            "wrap all names in one pair of parentheses: (Name, Name (Alias), Name)",
        ),
        (
            b"2025-04-04\n" + b"T" * 61 + b"\n(A)\nx\n",
            2,
            "the entry starting here ('" + "T" * 59 + "…') has no tag line",
            "end every entry with a line of tags such as '#moe #efficiency'",
        ),
        (
            b"2025-04-04\n" + b"T" * 60 + b"\n(A)\nx\n",
            2,
            "the entry starting here ('" + "T" * 60 + "') has no tag line",
            "end every entry with a line of tags such as '#moe #efficiency'",
        ),
    ],
)
def test_errors_say_exactly_what_and_how_to_fix_it(tmp_path, data, line, message, hint):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(DigestError) as caught:
        read_digest(path)
    assert (caught.value.line, caught.value.bare_message, caught.value.hint) == (
        line,
        message,
        hint,
    )


def test_warnings_name_the_entry_and_what_is_missing():
    parsed = parse_digest(f"{DATE}\n{entry()}\n", "d.txt")
    assert [(w.line, w.message) for w in parsed.warnings] == [
        (2, "entry 'A Paper' has no abstract"),
        (2, "entry 'A Paper' has no Korean comment"),
        (2, "entry 'A Paper' has no English comment"),
    ]
    bell = entry("Abs\x07tract.", "한국어.", "English.")
    control = parse_digest(f"{DATE}\n{bell}\n", "d.txt")
    assert [(w.line, w.message) for w in control.warnings] == [(4, "control characters removed")]
    assert control.digest.entries[0].abstract == "Abstract."


def test_parse_without_a_source_names_it_digest():
    with pytest.raises(DigestError) as caught:
        parse_digest("")
    assert caught.value.file == "<digest>"
    assert parse_digest(f"{DATE}\n{entry('x')}").digest.source == "<digest>"


def test_results_are_frozen_values_with_empty_defaults():
    import dataclasses

    from newsletter.digest import DigestReport, ParsedDigest

    parsed = parse_digest(f"{DATE}\n{entry('x', '한국어', 'English')}", "d.txt")
    report = DigestReport("d.txt", parsed.digest)
    assert report.warnings == () and report.errors == () and report.ok
    assert ParsedDigest(parsed.digest).warnings == ()
    for value in (parsed, report):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.digest = None  # type: ignore[misc]
    assert not DigestReport("d.txt", None).ok


def test_a_byte_order_mark_in_text_given_directly_is_dropped():
    # read_digest decodes with utf-8-sig; text handed to parse_digest may still have one.
    parsed = parse_digest(f"\ufeff{DATE}\n{entry('x', '한국어', 'English')}", "d.txt")
    assert parsed.digest.date == dt.date(2025, 4, 4) and parsed.warnings == ()


# --- limits: the largest digest read, the first one refused ------------------------


def test_max_entries_is_allowed_and_one_more_is_named_at_its_title_line():
    limits = DigestLimits(max_entries=2)
    two = f"{DATE}\n{entry('Abstract.')}\n{entry('Abstract.')}\n"
    assert len(parse_digest(two, "d.txt", limits).digest.entries) == 2
    # Lines: the date (1), two entries of four lines (2-9), the third's title (10).
    with pytest.raises(DigestError) as error:
        parse_digest(two + entry("Abstract.", title="Third") + "\n", "d.txt", limits)
    assert (error.value.file, error.value.line) == ("d.txt", 10)
    assert error.value.bare_message == (
        "more than 2 entries: this one is entry 3 (limits.max_entries)"
    )
    assert error.value.hint == (
        "one day's digest has far fewer papers: check the file, "
        "or raise limits.max_entries in the config"
    )


def test_max_bytes_is_read_whole_and_one_byte_more_is_refused(tmp_path):
    data = f"{DATE}\n{entry('초록입니다.')}".encode()  # its last byte ends the tag
    path = tmp_path / "d.txt"
    path.write_bytes(data)
    size = len(data)
    assert read_digest(path, DigestLimits(max_bytes=size)).digest.entries[0].tags == ("tag",)
    with pytest.raises(DigestError) as error:
        read_digest(path, DigestLimits(max_bytes=size - 1))
    assert (error.value.file, error.value.line) == (str(path), None)
    assert error.value.bare_message == (
        f"the file is {size:,} bytes, over limits.max_digest_bytes ({size - 1:,})"
    )
    assert error.value.hint == (
        "one day's digest is far smaller: check the file, "
        "or raise limits.max_digest_bytes in the config"
    )
    # A far larger file is named by its size, though only the limit is read.
    path.write_bytes(data + b"\n" * 5000)
    with pytest.raises(DigestError, match=rf"the file is {size + 5000:,} bytes, over"):
        read_digest(path, DigestLimits(max_bytes=size))


def test_a_byte_error_after_a_leading_blank_line_names_the_editors_line(tmp_path):
    path = tmp_path / "d.txt"
    path.write_bytes(b"\n" + "2025년 4월 4일".encode("cp949") + b"\n")
    with pytest.raises(DigestError) as error:
        read_digest(path)
    assert (error.value.line, error.value.bare_message) == (2, "the file is not UTF-8 text")


def test_a_line_with_a_break_and_a_control_character_gets_one_warning_saying_both():
    title = "Scaling\x0cLa\x01ws"  # a form feed, and a control character
    parsed = parse_digest(f"{DATE}\n{entry('Abstract.', title=title)}", "d.txt")
    assert parsed.digest.entries[0].title == "Scaling Laws"
    assert [str(w) for w in parsed.warnings][:1] == [
        "d.txt:2: form feed (U+000C) inside the line read as a space; control characters removed"
    ]


def test_an_error_quotes_the_start_of_its_line_in_whole_words():
    title = "A title made of many words that go on and on past the widths of messages"
    with pytest.raises(DigestError) as error:
        parse_digest(f"{DATE}\n{title}\n(Alice Kim)\nAn abstract.\n", "d.txt")
    assert error.value.bare_message == (
        "the entry starting here ('A title made of many words that go on and on past the…') "
        "has no tag line"
    )
