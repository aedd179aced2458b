"""Atom and RSS feeds: golden files, feedparser round-trips, ids, escaping.

Golden files live in tests/golden/feeds/. After an intended change to the feeds,
regenerate them and review the diff:

    NEWSLETTER_REGEN_GOLDEN=1 .venv/bin/pytest tests/test_site.py tests/test_feeds.py
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import feedparser
import pytest
from helpers import assert_golden, html_text, with_sample_links
from lxml import etree
from test_site import hostile_digest

from newsletter.feeds import clean, feed_files
from newsletter.model import Digest, Entry

GOLDEN = Path(__file__).parent / "golden" / "feeds"
EDITIONS = ("ko", "en", "both")
ATOM = "{http://www.w3.org/2005/Atom}"


def xml_feeds(files: dict[str, bytes]) -> dict[str, bytes]:
    """The Atom and RSS feeds among feed_files (JSON Feed: test_jsonfeed.py)."""
    return {path: data for path, data in files.items() if path.endswith(".xml")}


@pytest.fixture
def feeds(site_config, site_digests) -> dict[str, bytes]:
    return xml_feeds(feed_files(site_config, site_digests))


@pytest.fixture
def linked_feeds(site_config, site_digests) -> dict[str, bytes]:
    """The feeds with one paper link of each kind (helpers.with_sample_links)."""
    return xml_feeds(feed_files(site_config, [with_sample_links(d) for d in site_digests]))


def parse(data: bytes) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


@pytest.mark.parametrize("edition", EDITIONS)
def test_edition_atom_matches_golden(linked_feeds, edition):
    path = GOLDEN / f"{edition}-atom.xml"
    data = linked_feeds[f"feeds/{edition}/atom.xml"]
    assert_golden(path, data)


@pytest.mark.parametrize(
    ("path", "golden"),
    [
        ("feeds/both/rss.xml", "both-rss.xml"),
        ("feeds/en/tags/reasoning/atom.xml", "en-tag-reasoning-atom.xml"),
        ("feeds/ko/tags/rl/atom.xml", "ko-tag-rl-atom.xml"),
    ],
)
def test_rss_and_tag_feeds_match_golden(linked_feeds, path, golden):
    assert_golden(GOLDEN / golden, linked_feeds[path])


def test_every_feed_parses_cleanly(feeds):
    assert len(feeds) > 6
    for path, data in feeds.items():
        parsed = parse(data)
        assert parsed.entries, path
        assert parsed.feed.title and parsed.feed.link, path


@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("kind", ["atom", "rss"])
def test_edition_feed_items(feeds, edition, kind):
    parsed = parse(feeds[f"feeds/{edition}/{kind}.xml"])
    assert [entry.link for entry in parsed.entries] == [
        f"https://example.org/papers/{edition}/{date}/"
        for date in ("2025-05-19", "2025-04-04", "2025-01-22")  # newest first
    ]
    first = parsed.entries[0]
    if edition == "en":
        assert first.title == "May 19, 2025 · 6 papers"
    else:
        assert first.title == "2025년 5월 19일 · 논문 6편"
    assert first.published_parsed[:3] == (2025, 5, 18)  # 00:00 in Seoul is 15:00 UTC
    assert first.id == f"https://example.org/papers/{edition}/2025-05-19/"
    assert {"moe", "reasoning"} <= {tag.term for tag in first.tags}
    language = "en" if edition == "en" else "ko"
    assert parsed.feed.language == language
    assert parsed.feed.updated_parsed[:4] == (2025, 5, 18, 15)


def test_links_self_and_alternate(feeds):
    for kind in ("atom", "rss"):
        parsed = parse(feeds[f"feeds/ko/{kind}.xml"])
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["self"] == f"https://example.org/papers/feeds/ko/{kind}.xml"
        assert parsed.feed.link == "https://example.org/papers/ko/"


def test_ids_differ_across_editions(feeds):
    ids = [
        entry.id
        for edition in EDITIONS
        for entry in parse(feeds[f"feeds/{edition}/atom.xml"]).entries
    ]
    assert len(ids) == len(set(ids)) == 9


def test_hangul_intact_in_ko_content(feeds):
    for kind in ("atom", "rss"):
        entry = parse(feeds[f"feeds/ko/{kind}.xml"]).entries[1]
        html = entry.content[0].value
        assert (
            "수학 및 코드 데이터 371B. Common Crawl에서 추출한 수학 데이터만 해도 279B군요." in html
        )
        assert "The corpus contains 371B tokens" not in html
        assert "초록" in html
    both = parse(feeds["feeds/both/atom.xml"]).entries[1].content[0].value
    assert "수학 및 코드 데이터 371B" in both and "The corpus contains 371B tokens" in both


def test_tag_feeds_one_item_per_paper_newest_first(feeds):
    parsed = parse(feeds["feeds/ko/tags/reasoning/atom.xml"])
    dates = [entry.link.split("/")[-2] for entry in parsed.entries]
    assert dates == sorted(dates, reverse=True) and len(dates) > 1
    ids = [entry.id for entry in parsed.entries]
    assert len(ids) == len(set(ids))
    assert all("#" in entry_id and "/ko/" in entry_id for entry_id in ids)
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links["self"] == "https://example.org/papers/feeds/ko/tags/reasoning/atom.xml"
    assert links["alternate"] == "https://example.org/papers/ko/tags/reasoning/"


def test_max_items(site_config, site_digests):
    config = site_config.model_copy(
        update={"feeds": site_config.feeds.model_copy(update={"max_items": 2})}
    )
    files = xml_feeds(feed_files(config, site_digests))
    for path, data in files.items():
        assert len(parse(data).entries) <= 2, path
    newest = parse(files["feeds/en/rss.xml"])
    assert [entry.link[-11:-1] for entry in newest.entries] == ["2025-05-19", "2025-04-04"]


def test_deterministic(site_config, site_digests):
    assert feed_files(site_config, site_digests) == feed_files(
        site_config, list(reversed(site_digests))
    )


def test_atom_has_what_validators_require(feeds):
    for path, data in feeds.items():
        root = etree.fromstring(data)
        if root.tag != f"{ATOM}feed":
            continue
        for name in ("id", "title", "updated", "author"):
            assert root.find(f"{ATOM}{name}") is not None, (path, name)
        assert root.find(f"{ATOM}link[@rel='self']") is not None, path
        for entry in root.iter(f"{ATOM}entry"):
            for name in ("id", "title", "updated", "published", "content", "link"):
                assert entry.find(f"{ATOM}{name}") is not None, (path, name)


def test_rss_uses_dc_creator_and_permalink_guid(feeds):
    root = etree.fromstring(feeds["feeds/en/rss.xml"])
    item = root.find("channel/item")
    assert item.find("{http://purl.org/dc/elements/1.1/}creator").text == "ML Papers"
    assert item.find("guid").get("isPermaLink") == "true"
    assert item.find("author") is None


def test_hostile_text_is_escaped_in_feeds(site_config):
    files = xml_feeds(feed_files(site_config, [hostile_digest()]))
    for path, data in files.items():
        assert b"<script>" not in data, path
        parsed = parse(data)
        assert parsed.entries, path
    ko = parse(files["feeds/ko/atom.xml"]).entries[0].content[0].value
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in ko
    assert '<a href="https://example.org/x?a=1&amp;b=2">' in ko
    paper = parse(files["feeds/en/tags/gpt-4.5/atom.xml"]).entries[0]
    # Text with '<' or '&' goes out as escaped HTML: its text is the title.
    assert paper.title_detail.type == "text/html"
    assert html_text(paper.title) == '<script>alert(1)</script> {{ 7*7 }} Q&A "quotes"'
    assert "{% if true %}x{% endif %}" in paper.content[0].value
    assert "feeds/ko/tags/추론/atom.xml" in files


def test_control_characters_are_stripped(site_config):
    entry = Entry("Bell\x07 title", ("A",), "Abs\x00tract.", "코멘트\x1b", "Comment\ufffe", ("t",))
    digest = Digest(dt.date(2025, 2, 3), (entry,), "c.txt")
    for data in xml_feeds(feed_files(site_config, [digest])).values():
        parsed = parse(data)
        assert parsed.entries[0].title in (
            "Bell title",
            "2025년 2월 3일 · 논문 1편",
            "February 3, 2025 · 1 paper",
        )
    assert clean("a\x00b\x1fc\td\ne") == "abc\td\ne"


def test_no_digests_gives_valid_empty_feeds(site_config):
    files = feed_files(site_config, [])
    names = ("atom.xml", "rss.xml", "feed.json")
    assert set(files) == {f"feeds/{e}/{name}" for e in EDITIONS for name in names}
    for data in xml_feeds(files).values():
        assert feedparser.parse(data).bozo == 0
