"""URLs in digest text: where one ends (balanced parentheses stay, sentence
punctuation goes), how it is linked in HTML, and how the plain-text email lists
the links by number."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy

import pytest
from smtp_servers import mail_config, sample_digest

from newsletter.mail import build_edition_email, sign_token
from newsletter.model import Edition
from newsletter.render import linkify, split_url, urls

WIKI = "https://en.wikipedia.org/wiki/Transformer_(deep_learning)"
NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f"see {WIKI}.", [WIKI]),
        (f"see ({WIKI})", [WIKI]),
        (f"({WIKI}).", [WIKI]),
        ("https://a.org/(x)y)", ["https://a.org/(x)y"]),
        ("https://a.org/f(a(b))", ["https://a.org/f(a(b))"]),
        ("(https://arxiv.org/abs/2502.20853)", ["https://arxiv.org/abs/2502.20853"]),
        ("http://a.org/x https://b.org/y", ["http://a.org/x", "https://b.org/y"]),
        ("no url here, ftp://a.org/x", []),
        ("<https://a.org/x>", ["https://a.org/x"]),
        ("https://a.org/IMAX and https://a.org/v2X.", ["https://a.org/IMAX", "https://a.org/v2X"]),
        ("한국어 https://a.org/논문 끝", ["https://a.org/논문"]),
    ],
)
def test_urls_end_where_the_sentence_goes_on(text, found):
    assert urls(text) == found


@pytest.mark.parametrize("mark", [*list(".,;:!?'\""), ").", "!)", "?!", "...", "';"])
def test_trailing_punctuation_is_not_part_of_the_url(mark):
    assert split_url(f"https://a.org/x{mark}") == ("https://a.org/x", mark)
    assert urls(f"at https://a.org/x{mark} then") == ["https://a.org/x"]


def test_punctuation_inside_a_url_stays():
    assert urls("https://a.org/a.b,c;d:e!f?g=h&i") == ["https://a.org/a.b,c;d:e!f?g=h&i"]


def test_linkify_escapes_text_and_links_urls():
    html = linkify(f'<b>Q&A</b> {WIKI}; 논문 "x"')
    assert str(html) == (
        f'&lt;b&gt;Q&amp;A&lt;/b&gt; <a href="{WIKI}">{WIKI}</a>; 논문 &#34;x&#34;'
    )
    assert str(linkify("https://a.org/?a=1&b=<2>")) == (
        '<a href="https://a.org/?a=1&amp;b=">https://a.org/?a=1&amp;b=</a>&lt;2&gt;'
    )
    assert str(linkify("")) == ""


def test_the_plain_text_email_numbers_every_link(tmp_path):
    digest = sample_digest()
    first = dataclasses.replace(
        digest.entries[0],
        comment_en=f"Background: {WIKI}; code: https://github.com/x/y!",
        comment_ko="",
    )
    digest = dataclasses.replace(digest, entries=(first, *digest.entries[1:]))
    message = build_edition_email(mail_config(tmp_path), digest, Edition.EN, now=NOW)
    data = message.personalise("a@example.org", "", sign_token(b"k", "unsubscribe", "a@x.org"))
    msg = email.message_from_bytes(data, policy=email.policy.default)
    part = next(p for p in msg.iter_parts() if p.get_content_type() == "text/plain")
    text = part.get_content().replace("\r\n", "\n")
    page = "https://papers.example.org/en/2025-04-04/"
    assert f"Background: {WIKI}; code: https://github.com/x/y! [2] [3]" in text
    listed = text.split("Links:\n", 1)[1].split("\n\n", 1)[0]
    assert listed.splitlines() == [f"[1] {page}", f"[2] {WIKI}", "[3] https://github.com/x/y"]
