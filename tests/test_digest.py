"""The digest parser: the three real samples, every odd case, every bad file."""

from __future__ import annotations

import datetime as dt
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.digest import check_paths, format_digest, parse_digest, read_digest
from newsletter.errors import DigestError
from newsletter.model import Digest, Entry

DATA = Path(__file__).parent / "data" / "digests"

ENTRY = (
    "Title One\n"
    "(Alice Kim, Bob Lee)\n"
    "An abstract in English.\n"
    "한국어 코멘트입니다.\n"
    "An English comment.\n"
    "#tag-one #둘\n"
)


def parse(text: str | bytes, name: str = "d.txt"):
    if isinstance(text, bytes):
        from newsletter.digest import _decode

        text = _decode(text, name)
    return parse_digest(text, name)


# --- the three real samples -------------------------------------------------


def test_sample_2025_04_04_exact():
    parsed = read_digest(DATA / "2025-04-04.txt")
    digest = parsed.digest
    assert parsed.warnings == ()
    assert digest.date == dt.date(2025, 4, 4)
    assert [e.title for e in digest.entries] == [
        "MegaMath: Pushing the Limits of Open Math Corpora",
        "MegaScale-Infer: Serving Mixture-of-Experts at Scale with Disaggregated Expert Parallelism",
        "Inference-Time Scaling for Generalist Reward Modeling",
        "On Vanishing Variance in Transformer Length Generalization",
    ]
    assert [e.tags for e in digest.entries] == [
        ("math", "corpus", "pretraining"),
        ("efficiency",),
        ("inference-time-scaling", "reward-model", "rl"),
        ("transformer", "long-context"),
    ]
    assert digest.entries[0].authors == (
        "Fan Zhou",
        "Zengzhi Wang",
        "Nikhil Ranjan",
        "Zhoujun Cheng",
        "Liping Tang",
        "Guowei He",
        "Zhengzhong Liu",
        "Eric P. Xing",
    )
    assert len(digest.entries[1].authors) == 20
    # Nested parentheses inside a name: three authors, not four.
    assert digest.entries[3].authors == ("Ruining Li", "Gabrijel Boduljak", "Jensen (Jinghao)Zhou")
    first = digest.entries[0]
    assert first.abstract.startswith("Mathematical reasoning is a cornerstone")
    assert first.abstract.endswith("open math pre-training datasets.")
    assert (
        first.comment_ko
        == "수학 및 코드 데이터 371B. Common Crawl에서 추출한 수학 데이터만 해도 279B군요."
    )
    assert first.comment_en.startswith("The corpus contains 371B tokens")
    assert digest.entries[3].comment_en == (
        "The paper points out that the reduction in variance of attention outputs in long "
        "context situations is problematic. I think this can be linked to the issue of "
        "increasing entropy in attention scores. They mitigated this problem by applying "
        "layer normalization after the attention outputs. It's post norm."
    )


def test_sample_2025_01_22_exact():
    digest = read_digest(DATA / "2025-01-22.txt").digest
    assert digest.date == dt.date(2025, 1, 22)
    assert [e.tags for e in digest.entries] == [
        ("rl", "reasoning"),
        ("moe", "scaling-law", "sparsity"),
        ("pretraining", "dataset"),
        ("moe", "parallelism"),
    ]
    assert [len(e.authors) for e in digest.entries] == [9, 6, 6, 10]
    data_mix = digest.entries[2]
    assert data_mix.title == "Optimizing Pretraining Data Mixtures with LLM-Estimated Utility"
    assert "\\sim200x" in data_mix.abstract
    assert "(https://arxiv.org/abs/2304.09151)" in data_mix.comment_ko
    assert "(https://arxiv.org/abs/2304.09151)" in data_mix.comment_en
    assert digest.entries[0].abstract.endswith("at https://github.com/THUDM/T1.")


def test_sample_2025_05_19_exact():
    digest = read_digest(DATA / "2025-05-19.txt").digest
    assert digest.date == dt.date(2025, 5, 19)
    assert len(digest.entries) == 6
    assert [e.tags for e in digest.entries] == [
        ("moe", "efficiency"),
        ("image-generation", "reasoning", "rl"),
        ("reward-model", "alignment"),
        ("code", "scaling-law"),
        ("rl", "reasoning", "agent"),
        ("reward-model", "rl", "reasoning"),
    ]
    assert digest.entries[1].authors[-1] == "Ivan Vulić"
    assert "1.88×" in digest.entries[0].abstract
    assert digest.entries[4].comment_ko == "Multi Step GRPO를 효율적으로 진행하기 위한 방법이군요."
    assert digest.entries[5].comment_en.startswith("Analysis shows that models trained")
    assert digest.entries[3].authors[5] == "ziqi wang"


def test_sample_folder_checks_clean():
    reports = check_paths([DATA])
    assert [r.digest.date.isoformat() for r in reports] == [
        "2025-01-22",
        "2025-04-04",
        "2025-05-19",
    ]
    assert all(r.ok and not r.warnings for r in reports)


# --- odd but valid files ----------------------------------------------------


def test_crlf_bom_and_trailing_spaces():
    text = ("\ufeff2025년 4월 4일  \r\n" + ENTRY.replace("\n", "   \r\n")).encode()
    parsed = parse(text)
    entry = parsed.digest.entries[0]
    assert parsed.digest.date == dt.date(2025, 4, 4)
    assert entry.title == "Title One"
    assert entry.comment_en == "An English comment."
    assert entry.tags == ("tag-one", "둘")


def test_no_trailing_newline_and_no_blank_lines():
    parsed = parse("2025-04-04\n" + ENTRY.rstrip("\n") + "\n" + ENTRY.rstrip("\n"))
    assert len(parsed.digest.entries) == 2


def test_blank_lines_between_entries_and_before_date():
    parsed = parse("\n\n2025-04-04\n\n" + ENTRY + "\n\n\n" + ENTRY + "\n")
    assert len(parsed.digest.entries) == 2
    assert parsed.digest.entries[1].line == 14


def test_nfd_korean_is_normalised():
    text = unicodedata.normalize("NFD", "2025년 4월 4일\n" + ENTRY)
    assert "년" not in text  # decomposed: the date line only matches after NFC
    parsed = parse(text)
    assert parsed.digest.date == dt.date(2025, 4, 4)
    assert parsed.digest.entries[0].comment_ko == "한국어 코멘트입니다."
    assert parsed.digest.entries[0].tags == ("tag-one", "둘")


@pytest.mark.parametrize(
    ("line", "date"),
    [
        ("2025년 04월 04일", dt.date(2025, 4, 4)),
        ("2025년 4월 4일", dt.date(2025, 4, 4)),
        ("2025년 12월 31일", dt.date(2025, 12, 31)),
        ("2025-04-04", dt.date(2025, 4, 4)),
        ("2024년 2월 29일", dt.date(2024, 2, 29)),
    ],
)
def test_date_forms(line, date):
    assert parse(f"{line}\n{ENTRY}").digest.date == date


def test_multiline_abstract_with_lone_url_and_dot():
    text = (
        "2025-04-04\n"
        "Paper\n"
        "(A B)\n"
        "We release our code at\n"
        "https://github.com/example/repo\n"
        ".\n"
        "Further details follow here.\n"
        "코멘트.\n"
        "Comment.\n"
        "#x\n"
    )
    entry = parse(text).digest.entries[0]
    assert entry.abstract == (
        "We release our code at https://github.com/example/repo. Further details follow here."
    )
    assert entry.comment_ko == "코멘트."
    assert entry.comment_en == "Comment."


def test_multiline_korean_comment_keeps_lone_url_line():
    text = "2025-04-04\nPaper\n(A B)\nAbstract.\n첫 줄\n(https://arxiv.org/abs/1)\n둘째 줄\nEnglish.\n#x"
    entry = parse(text).digest.entries[0]
    assert entry.comment_ko == "첫 줄 (https://arxiv.org/abs/1) 둘째 줄"
    assert entry.comment_en == "English."


def test_nested_parentheses_in_authors():
    text = "2025-04-04\nT\n(Ruining Li, Gabrijel Boduljak, Jensen (Jinghao)Zhou)\nA.\n코.\nE.\n#t"
    assert parse(text).digest.entries[0].authors == (
        "Ruining Li",
        "Gabrijel Boduljak",
        "Jensen (Jinghao)Zhou",
    )


def test_missing_english_comment_is_a_warning():
    text = "2025-04-04\nT\n(A)\nAbstract.\n한국어만 있음.\n#t"
    parsed = parse(text, "x.txt")
    entry = parsed.digest.entries[0]
    assert (entry.abstract, entry.comment_ko, entry.comment_en) == (
        "Abstract.",
        "한국어만 있음.",
        "",
    )
    assert [str(w) for w in parsed.warnings] == ["x.txt:2: entry 'T' has no English comment"]


def test_missing_korean_comment_is_a_warning():
    text = "2025-04-04\nT\n(A)\nAbstract line.\nEnglish comment only.\n#t"
    parsed = parse(text, "x.txt")
    entry = parsed.digest.entries[0]
    assert (entry.abstract, entry.comment_ko, entry.comment_en) == (
        "Abstract line.",
        "",
        "English comment only.",
    )
    assert [str(w) for w in parsed.warnings] == ["x.txt:2: entry 'T' has no Korean comment"]


def test_tags_with_hangul_dots_dashes_underscores():
    text = "2025-04-04\nT\n(A)\nAb.\n코.\nE.\n#long-context #추론 #gpt-4.5 #snake_case #v2"
    assert parse(text).digest.entries[0].tags == (
        "long-context",
        "추론",
        "gpt-4.5",
        "snake_case",
        "v2",
    )


def test_special_characters_are_kept_as_text():
    title = 'Q&A about <think> and {{ 7*7 }} with "quotes" × \\sim200x 🚀'
    text = f"2025-04-04\n{title}\n(Ivan Vulić)\n<script>alert(1)</script>\n한글 “따옴표”.\nE.\n#t"
    entry = parse(text).digest.entries[0]
    assert entry.title == title
    assert entry.abstract == "<script>alert(1)</script>"


def test_control_characters_are_removed_with_a_warning():
    parsed = parse("2025-04-04\nT\x07itle\n(A)\nAb.\n코.\nE.\n#t", "c.txt")
    assert parsed.digest.entries[0].title == "Title"
    assert [str(w) for w in parsed.warnings] == ["c.txt:2: control characters removed"]


# --- bad files --------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line", "message"),
    [
        (b"", None, "the file is empty"),
        (b"  \n\n \r\n", None, "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 3, "binary file"),
        (b"2025-04-04\n\xff\xfe bad", 2, "not UTF-8"),
        (b"Title first\n(A)\n", 1, "expected the date line"),
        ("2025년 2월 30일\n".encode() + ENTRY.encode(), 1, "impossible date"),
        (b"2025-13-01\n" + ENTRY.encode(), 1, "impossible date"),
        (b"2025-04-04\n", 1, "no entries"),
        (b"2025-04-04\nTitle\nno authors here\nabstract\n#t\n", 3, "has no authors line"),
        (b"2025-04-04\nTitle\n#t\n", 3, "has no authors line"),
        (b"2025-04-04\n#orphan\n", 2, "tag line with no entry"),
        (b"2025-04-04\nTitle\n(A)\nabstract\n", 2, "has no tag line"),
        (b"2025-04-04\nTitle\n(A, (B)\nabstract\n#t\n", 3, "unbalanced parentheses"),
        # A tag line that holds something else is named there, not as a missing tag line.
        (b"2025-04-04\nTitle\n(A)\nabstract\n#ok #bad!tag\n", 5, "'#bad!tag' on the tag line"),
        (b"2025-04-04\nTitle\n(A)\nabstract\n# spaced\n", 5, "'#' on the tag line"),
        ("2025-04-04\nT\n(A)\nabs\n#추론 #좋은!태그\nT2\n(B)\nx\n#t\n".encode(), 5, "'#좋은!태그'"),
        ("2025-04-04\n".encode("utf-16"), 1, "UTF-16 text, not UTF-8"),
        ("2025-04-04\n".encode("utf-16-le"), 1, "UTF-16 text, not UTF-8"),
    ],
)
def test_bad_files(tmp_path, data, line, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(DigestError) as caught:
        read_digest(path)
    assert caught.value.file == str(path)
    assert caught.value.line == line
    assert message in caught.value.message
    assert str(path) in str(caught.value)


def test_a_line_starting_with_a_number_sign_can_be_text(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_text("2025-04-04\nTitle\n(A)\n#1 on the board, in C# and F#.\n#t\n", "utf-8")
    [entry] = read_digest(path).digest.entries
    assert entry.abstract == "#1 on the board, in C# and F#." and entry.tags == ("t",)


def test_folder_reports_bad_files_and_keeps_good_ones(tmp_path):
    (tmp_path / "good.txt").write_text("2025-04-04\n" + ENTRY)
    (tmp_path / "bad.txt").write_text("nothing here")
    (tmp_path / ".hidden").write_text("ignored")
    reports = {Path(r.file).name: r for r in check_paths([tmp_path])}
    assert set(reports) == {"bad.txt", "good.txt"}
    assert reports["good.txt"].ok
    assert not reports["bad.txt"].ok
    assert str(reports["bad.txt"].errors[0]).startswith(f"{tmp_path / 'bad.txt'}:1: ")


def test_duplicate_dates_are_errors_for_each_file(tmp_path):
    (tmp_path / "a.txt").write_text("2025-04-04\n" + ENTRY)
    (tmp_path / "b.txt").write_text("2025년 4월 4일\n" + ENTRY)
    (tmp_path / "c.txt").write_text("2025-04-05\n" + ENTRY)
    reports = {Path(r.file).name: r for r in check_paths([tmp_path])}
    assert reports["c.txt"].ok
    for name, other in (("a.txt", "b.txt"), ("b.txt", "a.txt")):
        assert not reports[name].ok
        assert "same date 2025-04-04" in reports[name].errors[0].message
        assert other in reports[name].errors[0].message


def test_date_comes_from_content_not_name(tmp_path):
    path = tmp_path / "2030-01-01.txt"
    path.write_text("2025-04-04\n" + ENTRY)
    assert read_digest(path).digest.date == dt.date(2025, 4, 4)


# --- round trip ----------------------------------------------------------------

_LATIN_WORD = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCXYZéüñ0123456789&<>{}*\"'’×"),
    min_size=1,
    max_size=8,
)
_HANGUL_WORD = st.text(
    alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), min_size=1, max_size=6
)


def _sentence(word, min_words=1):
    return st.lists(word, min_size=min_words, max_size=8).map(" ".join)


_title = _sentence(_LATIN_WORD, 2).filter(lambda t: not t.startswith(("(", "#")))
_name = st.builds(
    lambda first, last, alias: f"{first} {last}" + (f" ({alias})" if alias else ""),
    _LATIN_WORD.filter(lambda w: w.isalnum()),
    _LATIN_WORD.filter(lambda w: w.isalnum()),
    st.one_of(st.none(), _LATIN_WORD.filter(lambda w: w.isalnum())),
)
_tag = st.text(alphabet=st.sampled_from("abcxyz0129-_.추론"), min_size=1, max_size=10)
_entry = st.builds(
    Entry,
    title=_title,
    authors=st.lists(_name, min_size=1, max_size=5).map(tuple),
    abstract=_sentence(_LATIN_WORD, 3).filter(lambda t: not t.startswith("#")),
    comment_ko=st.builds(lambda k, e: f"{k} {e}", _HANGUL_WORD, _sentence(_LATIN_WORD)),
    comment_en=_sentence(_LATIN_WORD, 2).filter(lambda t: not t.startswith("#")),
    tags=st.lists(_tag, min_size=1, max_size=4).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(
    date=st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31)),
    entries=st.lists(_entry, min_size=1, max_size=5).map(tuple),
)
def test_format_then_parse_round_trips(date, entries):
    digest = Digest(date, entries, "gen.txt")
    parsed = parse_digest(format_digest(digest), "gen.txt")
    assert parsed.digest == digest
    assert parsed.warnings == ()
