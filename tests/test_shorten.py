"""Shortening (email size guard, preheader, messages) never cuts a URL or a word,
and the ellipsis and "read more" stay outside the text's own links."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

import pytest
from helpers import autolinks, edition_email, email_bodies, html_text, numbered_links
from hypothesis import given, settings
from hypothesis import strategies as st
from smtp_servers import mail_config, sample_digest

from newsletter.digest import parse_digest
from newsletter.errors import DigestError
from newsletter.mail_layout import Cut, render_bodies
from newsletter.model import Digest, Edition, Entry
from newsletter.text import Shortened, shorten, url_spans, urls

# The issue's input: an abstract that starts with a 130-character URL.
LONG_URL = "https://example.org/lab/" + "reasoning-with-tiny-models/" * 3 + "x" * 25
assert len(LONG_URL) == 130
URL_FIRST = f"{LONG_URL} holds the code and data. We show that small models reason well."
HANGUL = "작은 모델도 충분히 추론할 수 있다는 것을 보여 주는 논문입니다. " * 6
LATIN = "Mixture-of-experts routing balances load across accelerators efficiently " * 4
URL_MIDDLE = f"Code and weights: {LONG_URL}, released under a permissive licence."


def word_char(char: str) -> bool:
    """Letters and digits of Latin, Hangul...; Han is written without spaces."""
    return char.isalnum() and not "\u4e00" <= char <= "\u9fff"


def assert_clean_cut(text: str, limit: int) -> str:
    """Shorten and check every promise; returns what a reader sees."""
    short = shorten(text, limit)
    shown = str(short)
    assert len(shown) <= limit
    assert text.startswith(short.head)
    if not short.cut:
        assert short.head == text
        return shown
    end = len(short.head)
    # Not inside a word: the characters on both sides of the cut are not both letters.
    if end:
        assert not (word_char(text[end - 1]) and word_char(text[end])), (text, end)
    # Not inside a URL, and every URL kept is whole.
    for start, stop in url_spans(text):
        assert not start < end < stop
    assert urls(short.head) == [text[a:b] for a, b in url_spans(text) if b <= end]
    return shown


@pytest.mark.parametrize("text", [URL_FIRST, HANGUL, LATIN, URL_MIDDLE])
@pytest.mark.parametrize("limit", [0, 1, 2, 20, 45, 60, 119, 120, 121, 200])
def test_cut_between_words_and_outside_urls(text, limit):
    assert_clean_cut(text, limit)


def test_the_issue_case_drops_the_url_whole():
    short = shorten(URL_FIRST, 120)
    assert short.head == "" and short.cut  # the URL does not fit: none of it is kept
    kept = shorten(f"Intro. {URL_FIRST}", 120)
    assert kept.head == "Intro." and str(kept) == "Intro.…"


def test_hangul_cut_at_a_space():
    short = shorten(HANGUL, 50)
    assert (
        str(short)
        == "작은 모델도 충분히 추론할 수 있다는 것을 보여 주는 논문입니다. 작은 모델도 충분히…"
    )


def test_a_head_that_ends_with_a_url_gets_a_spaced_ellipsis():
    text = "See https://example.org/a and more words after it"
    assert str(shorten(text, 28)) == "See https://example.org/a …"
    # " …" is one character longer: when it would not fit, the URL goes too.
    assert str(shorten(text, 27)) == "See https://example.org/a …"
    assert str(shorten(text, 26)) == "See…"


def test_a_text_that_fits_is_kept_whole_in_a_frozen_value():
    text = "짧은 글, short text"
    short = shorten(text, len(text))
    assert short == Shortened(text, cut=False) and str(short) == text and short.ellipsis == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        short.head = ""  # type: ignore[misc]


def test_text_without_spaces_is_cut_between_a_word_and_punctuation():
    assert str(shorten("alpha,beta,gamma,delta", 12)) == "alpha,beta…"
    assert str(shorten("alphabeta/gammadelta", 12)) == "alphabeta/…"
    assert str(shorten("한국어/영어/중국어/일본어", 9)) == "한국어/영어/…"


def test_a_space_is_preferred_while_it_keeps_60_percent_of_the_room():
    # Room for 33 characters: a cut after the space after "delta" (23 of 33)
    # wins over the later '/'. Room for 29: one after "gamma " (17 of 29) does not.
    text = "alpha beta gamma delta epsilon/zeta/eta"
    assert str(shorten(text, 34)) == "alpha beta gamma delta…"
    assert str(shorten("alpha beta gamma delta/epsilon/zeta", 30)) == "alpha beta gamma delta/…"
    # Exactly 60 % (a cut after "gammas ", 18 of 30) is enough.
    assert str(shorten("alpha beta gammas epsilon/zeta/eta/theta", 31)) == "alpha beta gammas…"
    # A URL that would fit but for the " …" goes; the room is then one less
    # (32): a cut after "us " (19 of 32) is under 60 %, so it falls after 中文.
    assert str(shorten("Code for all of us 中文https://x.io and more", 34)) == (
        "Code for all of us 中文…"
    )


def test_a_url_that_ends_with_an_opener_keeps_it():
    # '(' is cut as a dangling opener, but not from the end of a URL kept whole.
    assert str(shorten("see https://a.org/x( and more words", 22)) == "see https://a.org/x( …"


def test_a_limit_of_two_keeps_a_one_character_word():
    assert str(shorten("a bc", 2)) == "a…"
    assert str(shorten("가 나다", 2)) == "가…"
    assert str(shorten("ab c", 2)) == ""


def test_a_dangling_separator_or_opener_goes_with_the_cut():
    for mark in ",;:([{":
        assert str(shorten(f"alpha beta{mark} gamma delta epsilon", 13)) == "alpha beta…"
    # Anything else ends a sentence or a word: it stays.
    for mark in ".!?)]}X가":
        assert str(shorten(f"alpha beta{mark} gamma delta epsilon", 13)) == f"alpha beta{mark}…"


def test_text_without_spaces_is_cut_between_ideographs():
    text = "这是一个非常长的中文句子没有任何空格但是仍然需要被截断" * 3
    short = shorten(text, 20)
    assert len(str(short)) == 20 and short.head == text[:19]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "word",
                "단어를",
                "모델",
                "https://example.org/a/b",
                "(https://x.org/y)",
                ",",
                ".",
                "中文",
            ]
        ),
        max_size=30,
    ).map(" ".join),
    st.integers(min_value=0, max_value=120),
)
def test_any_text_any_limit(text, limit):
    assert_clean_cut(text, limit)


# --- the email size guard ----------------------------------------------------------


def url_digest(abstract: str = URL_FIRST) -> Digest:
    base = sample_digest()
    entries = (
        dataclasses.replace(base.entries[0], abstract=abstract),
        dataclasses.replace(base.entries[1], abstract=HANGUL + " " + URL_MIDDLE),
        *base.entries[2:],
    )
    return dataclasses.replace(base, entries=entries)


@pytest.mark.parametrize("limit", [120, 300])
def test_shortened_email_never_links_a_cut_url(tmp_path, limit):
    config = mail_config(tmp_path)
    digest = url_digest()
    from newsletter.letters import Letter

    bodies = render_bodies(
        config,
        Letter.daily(digest),
        Edition.KO,
        subject="s",
        unsubscribe="https://u/",
        preferences="https://p/",
        cut=Cut(abstract=limit),
    )
    full = {u for entry in digest.entries for u in urls(entry.abstract + " " + entry.comment_ko)}
    page = "https://papers.example.org/ko/2025-04-04/"
    for href in autolinks(bodies.html):
        assert href in full, href
    assert "%E2%80%A6" not in bodies.html and "…</a>" not in bodies.html
    links = numbered_links(bodies.text)
    # Besides the text's own URLs: the page, its papers' anchors ("read more")
    # and the footer's links; never a cut URL.
    footer = {"https://u/", "https://p/", "https://papers.example.org/subscribe"}
    anchors = {url for url in links.values() if url.startswith(page + "#")}
    assert links[1] == page and set(links.values()) - {page} - anchors - footer <= full
    # The ellipsis and "read more" follow the text, outside its links.
    assert re.search(
        r"…\s*<a [^>]*href=\"https://papers\.example\.org/ko/2025-04-04/#", bodies.html
    )
    originals = [entry.abstract for entry in digest.entries]
    # (Long HTML lines are folded at spaces: a newline there is the same white space.)
    shown = [
        html_text(p).replace("\n", " ")
        for p in re.findall(r'<p class="abstract"[^>]*>(.*?)</p>', bodies.html, re.S)
    ]
    for text in shown:
        if text == "초록 보기":  # nothing of the abstract fits: only a link to it
            continue
        if "…" not in text:
            assert text in originals
            continue
        head = text.split("…")[0].rstrip()
        (original,) = [a for a in originals if a.startswith(head)]
        assert not (head and word_char(head[-1]) and word_char(original[len(head)]))
    assert "전문 보기" in bodies.text


def test_size_guard_shortens_every_abstract_cleanly(tmp_path):
    config = mail_config(tmp_path, max_bytes=20_000)
    digest = url_digest()
    big = dataclasses.replace(
        digest,
        entries=tuple(
            dataclasses.replace(e, abstract=(e.abstract + " ") * 8) for e in digest.entries
        ),
    )
    text, html = email_bodies(edition_email(config, big, Edition.EN))
    full = {u for entry in big.entries for u in urls(entry.abstract + " " + entry.comment_en)}
    linked = autolinks(html)
    assert set(linked) <= full and "%E2%80%A6" not in html
    assert "Read more" in html and "Read more" in text


def test_preheader_is_cut_between_words(tmp_path):
    entries = tuple(
        Entry(
            f"Scaling Laws for Sparsely Activated Transformer Models {n}",
            ("A",),
            "x",
            "가",
            "y",
            ("t",),
        )
        for n in range(3)
    )
    digest = Digest(dt.date(2025, 6, 3), entries, "p.txt")
    _text, html = email_bodies(edition_email(mail_config(tmp_path), digest, Edition.EN))
    preheader = html_text(re.search(r'<div class="preheader"[^>]*>(.*?)</div>', html, re.S)[1])
    titles = " · ".join(entry.title for entry in entries)
    assert preheader.endswith("…") and len(preheader) <= 140
    head = preheader[:-1]
    assert titles.startswith(head) and titles[len(head)] == " "


def test_error_messages_quote_whole_words():
    title = "A title made of many words that go on and on past the widths of messages"
    text = f"2025-06-03\n{title}\n#tag\n"
    with pytest.raises(DigestError) as caught:
        parse_digest(text, "w.txt")
    quoted = re.search(r"entry '(.*)…'", caught.value.message)[1]
    assert title.startswith(quoted) and title[len(quoted)] == " "
