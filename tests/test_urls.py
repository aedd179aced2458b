"""Where a bare URL ends, in Korean, CJK and English text: the same links in every
output (site pages, Atom and RSS content, email HTML, the email text part's
numbered link list)."""

from __future__ import annotations

import datetime as dt

import feedparser
import pytest
from helpers import autolinks, edition_email, email_bodies, numbered_links
from hypothesis import given
from hypothesis import strategies as st
from smtp_servers import mail_config

from newsletter.feeds import feed_files
from newsletter.model import Digest, Edition, Entry
from newsletter.site import index_files, issue_files
from newsletter.text import linkify, url_spans, urls

# The issue's line: Hangul particles and fullwidth punctuation right after URLs.
ISSUE_LINE = (
    "코드는 https://example.org/lab/tiny-reasoner에서 받을 수 있고, "
    "데모（https://example.org/demo）도 있습니다。"
)
WIKI = "https://en.wikipedia.org/wiki/Transformer_(deep_learning)"
ESCAPED = "https://ko.wikipedia.org/wiki/%ED%8A%B8%EB%9E%9C%EC%8A%A4%ED%8F%AC%EB%A8%B8"

# (text, the URLs in it): one case per rule.
CASES = [
    (ISSUE_LINE, ["https://example.org/lab/tiny-reasoner", "https://example.org/demo"]),
    (
        "자세한 내용은 https://arxiv.org/abs/2502.20853을 참고하세요.",
        ["https://arxiv.org/abs/2502.20853"],
    ),
    (f"{ESCAPED}를 보세요", [ESCAPED]),
    ("中文说明见https://example.org/zh/readme。谢谢", ["https://example.org/zh/readme"]),
    ("日本語はhttps://example.org/ja/doc、次へ", ["https://example.org/ja/doc"]),
    (
        "링크：https://example.org/a\u3000다음，https://example.org/b，끝",
        ["https://example.org/a", "https://example.org/b"],
    ),
    ("「https://example.org/quoted」라고", ["https://example.org/quoted"]),
    (f"(see {WIKI}).", [WIKI]),
    (f"See {WIKI}, then more.", [WIKI]),
    ("(https://arxiv.org/abs/2304.09151)", ["https://arxiv.org/abs/2304.09151"]),
    (
        "Try https://example.org/x. Or https://example.org/y, https://example.org/z; "
        "https://example.org/w: https://example.org/v! https://example.org/u?",
        [f"https://example.org/{c}" for c in "xyzwvu"],
    ),
    ("Query https://example.org/s?q=a&b=c&d=%20e.", ["https://example.org/s?q=a&b=c&d=%20e"]),
    ("Umlaut https://de.wikipedia.org/wiki/Straße.", ["https://de.wikipedia.org/wiki/Straße"]),
    ("“https://example.org/curly”…", ["https://example.org/curly"]),
    ("Not a link: https:// and https://.", []),
    # Only the unbalanced closing parenthesis goes; nested pairs stay.
    ("https://a.org/(x)y)", ["https://a.org/(x)y"]),
    ("https://a.org/f(a(b))", ["https://a.org/f(a(b))"]),
    # Square brackets likewise: an unbalanced ']' goes, a pair stays.
    (
        "[https://a.org/x] https://a.org/a[1] https://a.org/y]",
        ["https://a.org/x", "https://a.org/a[1]", "https://a.org/y"],
    ),
    # A URL may end with a non-ASCII letter; what follows it is still looked at.
    ("Café: https://fr.wikipedia.org/wiki/Café au lait", ["https://fr.wikipedia.org/wiki/Café"]),
    # Fullwidth letters and digits (East Asian width F) end a URL like Hangul does.
    ("전각 https://a.org/xＡＢ１２ 끝", ["https://a.org/x"]),
    ("http://a.org/x https://b.org/y", ["http://a.org/x", "https://b.org/y"]),
    ("no url here, ftp://a.org/x", []),
    ("<https://a.org/x>", ["https://a.org/x"]),
    # A letter at the end is part of the URL, whatever letter it is.
    ("https://a.org/IMAX and https://a.org/v2X.", ["https://a.org/IMAX", "https://a.org/v2X"]),
    # Sentence punctuation inside a URL stays.
    ("https://a.org/a.b,c;d:e!f?g=h&i", ["https://a.org/a.b,c;d:e!f?g=h&i"]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_url_ends(text, expected):
    assert urls(text) == expected
    assert autolinks(str(linkify(text))) == expected


# (. , ; : ! ? alone: the "Try https://example.org/x. Or ..." case above.)
@pytest.mark.parametrize("mark", ["'", '"', ").", "!)", "?!", "...", "';"])
def test_trailing_quotes_and_runs_of_punctuation_are_not_part_of_the_url(mark):
    assert url_spans(f"https://a.org/x{mark}") == [(0, len("https://a.org/x"))]
    assert urls(f"at https://a.org/x{mark} then") == ["https://a.org/x"]


WIDE_OR_SPACE = "가나다한국어。（）、，：「」中文\u3000 "


@given(st.text(alphabet=st.sampled_from(WIDE_OR_SPACE + ".,;:!?)(abc/%")))
def test_a_url_never_takes_east_asian_text_or_trailing_punctuation(prose):
    text = f"see https://example.org/p{prose}"
    found = urls(text)[0]
    assert text.startswith(f"see {found}")
    assert found.startswith("https://example.org/p")
    assert not set(found) & set(WIDE_OR_SPACE)
    assert found[-1] not in ".,;:!?"
    assert found.count("(") >= found.count(")") or found[-1] != ")"
    following = text[4 + len(found) :]
    # The URL runs up to the first character that cannot be in one.
    assert not following or following[0] in WIDE_OR_SPACE + ".,;:!?)"


def test_linkify_escapes_everything_else():
    html = str(linkify("<b>x</b> & https://example.org/?a=1&b=<2> 끝"))
    assert html == (
        '&lt;b&gt;x&lt;/b&gt; &amp; <a href="https://example.org/?a=1&amp;b=">'
        "https://example.org/?a=1&amp;b=</a>&lt;2&gt; 끝"
    )
    assert str(linkify(f'<b>Q&A</b> {WIKI}; 논문 "x"')) == (
        f'&lt;b&gt;Q&amp;A&lt;/b&gt; <a href="{WIKI}">{WIKI}</a>; 논문 &#34;x&#34;'
    )
    assert str(linkify("")) == ""
    assert url_spans("a https://x.org b") == [(2, 15)]


# --- every output links the same URLs ---------------------------------------------

ABSTRACT = f"We release code at https://example.org/lab/code. See also {WIKI}."
COMMENT_KO = f"{ISSUE_LINE} 위키: {ESCAPED}를 참고."
COMMENT_EN = (
    "Demo (https://example.org/demo), paper https://arxiv.org/abs/2502.20853; "
    "中文https://example.org/zh/readme。"
)
EXPECTED = [
    "https://example.org/lab/code",
    WIKI,
    "https://example.org/lab/tiny-reasoner",
    "https://example.org/demo",
    ESCAPED,
    "https://example.org/demo",
    "https://arxiv.org/abs/2502.20853",
    "https://example.org/zh/readme",
]


def linked_digest() -> Digest:
    entry = Entry("Tiny Reasoner", ("Kim",), ABSTRACT, COMMENT_KO, COMMENT_EN, ("reasoning",))
    return Digest(dt.date(2025, 6, 2), (entry,), "links.txt")


def test_site_pages_link_exactly_the_urls(site_config):
    digest = linked_digest()
    page = issue_files(site_config, digest)["both/2025-06-02/index.html"].decode()
    assert autolinks(page) == EXPECTED
    tag_page = index_files(site_config, [digest])["both/tags/reasoning/index.html"].decode()
    assert autolinks(tag_page) == EXPECTED[2:]  # tag pages show the comments
    ko_page = issue_files(site_config, digest)["ko/2025-06-02/index.html"].decode()
    assert autolinks(ko_page) == EXPECTED[:5]


@pytest.mark.parametrize("kind", ["atom", "rss"])
def test_feed_content_links_exactly_the_urls(site_config, kind):
    files = feed_files(site_config, [linked_digest()])
    entry = feedparser.parse(files[f"feeds/both/{kind}.xml"]).entries[0]
    assert autolinks(entry.content[0].value) == EXPECTED
    if kind == "atom":
        tagged = feedparser.parse(files["feeds/both/tags/reasoning/atom.xml"]).entries[0]
        assert autolinks(tagged.content[0].value) == EXPECTED


def test_email_html_and_numbered_links_are_the_same_urls(tmp_path):
    data = edition_email(mail_config(tmp_path), linked_digest(), Edition.BOTH)
    text, html = email_bodies(data)
    shown = EXPECTED[2:] + EXPECTED[:2]  # the email shows the comments, then the abstract
    assert autolinks(html) == shown
    links = numbered_links(text)
    assert links[1] == "https://papers.example.org/both/2025-06-02/"
    # One number per distinct URL, in reading order; the footer's links follow.
    distinct = list(dict.fromkeys(shown))
    assert [links[n] for n in sorted(links)][1 : 1 + len(distinct)] == distinct
    assert len(set(links.values())) == len(links)
    # The text part points at each URL's number right after its block (wrapped
    # at 76 columns: compare with the line breaks as spaces).
    flat = " ".join(text.split())
    assert f"{ABSTRACT} [7] [8]" in flat
    assert f"{COMMENT_EN} [3] [5] [6]" in flat  # the demo's URL kept its number [3]
    for url in EXPECTED:
        assert url in text
    assert "tiny-reasoner에서" in flat  # the text itself is untouched
