"""JSON Feed 1.1, OPML and WebSub: the feeds readers and services ask for.

JSON Feeds are checked against the spec's rules (tests/jsonfeed_rules.py);
the WebSub hub is a real HTTP server on localhost that records the pings.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs

import pytest
from jsonfeed_rules import problems
from lxml import etree
from test_site import hostile_digest

from newsletter.feeds import feed_files
from newsletter.model import Digest, Entry
from newsletter.publish import build, publish
from newsletter.site import write_site

EDITIONS = ("ko", "en", "both")
ATOM = "{http://www.w3.org/2005/Atom}"


def json_feeds(files: dict[str, bytes]) -> dict[str, dict]:
    return {p: json.loads(d) for p, d in files.items() if p.endswith(".json")}


# --- JSON Feed ------------------------------------------------------------------------


def test_the_rules_catch_what_they_should():
    """The checker itself: each broken rule is reported."""
    assert problems({"version": "https://jsonfeed.org/version/1", "items": []})
    bad_item = {"id": 1, "date_published": "2025-04-04 00:00", "tags": "x", "zzz": 1}
    found = problems(
        {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [bad_item]}
    )
    assert any("id is required" in p for p in found)
    assert any("RFC 3339" in p for p in found)
    assert any("content_html or content_text" in p for p in found)
    assert any("tags must be" in p for p in found)
    assert any("unknown key 'zzz'" in p for p in found)


def test_every_json_feed_follows_json_feed_1_1(site_config, site_digests):
    feeds = json_feeds(feed_files(site_config, site_digests))
    assert {f"feeds/{e}/feed.json" for e in EDITIONS} <= set(feeds)
    assert sum("/tags/" in path for path in feeds) > 20
    for path, feed in feeds.items():
        assert problems(feed) == [], path
        assert feed["items"], path


@pytest.mark.parametrize("edition", EDITIONS)
def test_edition_json_feed_matches_the_atom_feed(site_config, site_digests, edition):
    files = feed_files(site_config, site_digests)
    feed = json.loads(files[f"feeds/{edition}/feed.json"])
    atom = etree.fromstring(files[f"feeds/{edition}/atom.xml"])
    atom_ids = [e.findtext(f"{ATOM}id") for e in atom.iter(f"{ATOM}entry")]
    assert [item["id"] for item in feed["items"]] == atom_ids  # same items, same order
    assert feed["feed_url"] == f"https://example.org/papers/feeds/{edition}/feed.json"
    assert feed["home_page_url"] == f"https://example.org/papers/{edition}/"
    assert feed["language"] == ("en" if edition == "en" else "ko")
    first = feed["items"][0]
    assert first["date_published"] == "2025-05-19T00:00:00+09:00"
    assert first["url"] == f"https://example.org/papers/{edition}/2025-05-19/"
    if edition != "en":
        assert first["title"] == "2025년 5월 19일 · 논문 6편"
        assert "수학 및 코드 데이터 371B" in feed["items"][1]["content_html"]


def test_json_feed_keeps_hangul_and_text_stays_text(site_config):
    files = feed_files(site_config, [hostile_digest()])
    assert "추론".encode() in files["feeds/ko/tags/추론/feed.json"]  # UTF-8, not \\uXXXX
    feed = json.loads(files["feeds/en/tags/gpt-4.5/feed.json"])
    assert problems(feed) == []
    item = feed["items"][0]
    assert item["title"] == '<script>alert(1)</script> {{ 7*7 }} Q&A "quotes"'  # plain text
    assert "<script>" not in item["content_html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in item["content_html"]


def test_control_characters_never_reach_json_feeds(site_config):
    entry = Entry("Bell\x07 title", ("A",), "Abs\x00tract.", "코멘트\x1b", "Comment", ("t",))
    files = feed_files(site_config, [Digest(dt.date(2025, 2, 3), (entry,), "c.txt")])
    for path, feed in json_feeds(files).items():
        assert problems(feed) == [], path
        assert "\x07" not in json.dumps(feed, ensure_ascii=False), path


def test_json_feed_external_url_and_atom_related_link():
    """A paper link set on an item reaches both formats (for the paper-links work)."""
    from newsletter.feeds import FeedInfo, FeedItem, build_feed, build_json_feed

    when = dt.datetime(2025, 4, 4, tzinfo=dt.UTC)
    info = FeedInfo(
        "https://e.org/f",
        "T",
        "S",
        "en",
        "A",
        "https://e.org/",
        {"atom": "https://e.org/atom.xml", "json": "https://e.org/feed.json"},
    )
    item = FeedItem(
        "https://e.org/p#a",
        "P",
        "https://e.org/p#a",
        when,
        when,
        "s",
        "<p>c</p>",
        (),
        external_url="https://arxiv.org/abs/2504.02807",
    )
    feed = json.loads(build_json_feed(info, [item]))
    assert problems(feed) == [] and feed["items"][0]["external_url"] == item.external_url
    entry = etree.fromstring(build_feed(info, [item], "atom")).find(f"{ATOM}entry")
    related = entry.find(f"{ATOM}link[@rel='related']")
    assert related is not None and related.get("href") == item.external_url


# --- OPML -------------------------------------------------------------------------------


def test_opml_lists_every_feed_once(site_config, site_digests):
    write_site(site_config, site_digests)
    public = site_config.paths.public
    root = etree.fromstring((public / "feeds.opml").read_bytes())
    assert root.tag == "opml" and root.get("version") == "2.0"
    listed = [o.get("xmlUrl") for o in root.iter("outline") if o.get("xmlUrl")]
    assert len(listed) == len(set(listed))
    on_disk = {
        "https://example.org/papers/" + p.relative_to(public).as_posix()
        for p in public.glob("feeds/**/atom.xml")
    }
    from urllib.parse import unquote

    assert {unquote(url) for url in listed} == on_disk
    for outline in root.iter("outline"):
        if outline.get("xmlUrl"):
            assert outline.get("type") == "rss" and outline.get("text")
            assert outline.get("htmlUrl").startswith("https://example.org/papers/")
    editions = [o.get("text") for o in root.find("body")]
    assert editions == ["ML Papers · 한국어", "ML Papers · English", "ML Papers · 한국어 + English"]


def test_opml_escapes_and_keeps_hangul(site_config):
    write_site(site_config, [hostile_digest()])
    data = (site_config.paths.public / "feeds.opml").read_bytes()
    root = etree.fromstring(data)
    texts = [o.get("text") for o in root.iter("outline")]
    assert "#추론 · ML Papers · 한국어" in texts
    assert "추론".encode() in data


# --- WebSub -----------------------------------------------------------------------------


class _Hub(http.server.BaseHTTPRequestHandler):
    status = 204
    pings: list[dict[str, list[str]]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        type(self).pings.append(form)
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def hub(status: int = 204) -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """A WebSub hub on localhost that answers `status` and records each ping."""
    handler = type("Hub", (_Hub,), {"status": status, "pings": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hub", handler.pings
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def with_hub(config, url: str, digests_dir=None):
    feeds = config.feeds.model_copy(update={"websub_hub": url})
    update = {"feeds": feeds}
    if digests_dir is not None:
        update["paths"] = config.paths.model_copy(update={"digests": digests_dir})
    return config.model_copy(update=update)


def test_feeds_declare_the_hub(site_config, site_digests):
    config = with_hub(site_config, "https://hub.example.org/")
    files = feed_files(config, site_digests)
    atom = etree.fromstring(files["feeds/ko/atom.xml"])
    assert atom.find(f"{ATOM}link[@rel='hub']").get("href") == "https://hub.example.org/"
    rss = etree.fromstring(files["feeds/ko/rss.xml"])
    assert rss.find(f"channel/{ATOM}link[@rel='hub']").get("href") == "https://hub.example.org/"
    assert rss.find(f"channel/{ATOM}link[@rel='self']") is not None
    feed = json.loads(files["feeds/ko/feed.json"])
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.org/"}]
    tag = etree.fromstring(files["feeds/en/tags/reasoning/atom.xml"])
    assert tag.find(f"{ATOM}link[@rel='hub']") is not None
    assert b'rel="hub"' not in feed_files(site_config, site_digests)["feeds/ko/atom.xml"]


def test_publish_pings_the_hub_with_the_feeds_it_changed(site_config, digests_dir):
    with hub() as (url, pings):
        config = with_hub(site_config, url, digests_dir)
        first = publish(config, dt.date(2025, 4, 4), email=False)
        assert first.warnings == ()
        pinged = [form["hub.url"][0] for form in pings]
        assert all(form["hub.mode"] == ["publish"] for form in pings)
        assert "https://example.org/papers/feeds/ko/atom.xml" in pinged
        assert "https://example.org/papers/feeds/both/feed.json" in pinged
        assert "https://example.org/papers/feeds/en/tags/math/atom.xml" in pinged
        assert len(pinged) == len(set(pinged))
        pings.clear()
        publish(config, dt.date(2025, 4, 4), email=False)  # nothing changed
        assert pings == []
        build(config)  # the other two issues: the edition feeds change again
        assert "https://example.org/papers/feeds/en/rss.xml" in [f["hub.url"][0] for f in pings]


def test_a_failing_hub_is_a_warning_and_publishing_goes_on(site_config, digests_dir):
    with hub(status=500) as (url, pings):
        config = with_hub(site_config, url, digests_dir)
        result = publish(config, dt.date(2025, 4, 4), email=False)
    assert pings and result.warnings
    assert "answered 500" in result.warnings[0]
    assert (site_config.paths.public / "ko/2025-04-04/index.html").is_file()


def test_an_unreachable_hub_is_one_warning(site_config, digests_dir):
    with hub() as (url, _pings):
        pass  # the port is closed now
    config = with_hub(site_config, url, digests_dir)
    result = publish(config, dt.date(2025, 4, 4), email=False)
    assert len(result.warnings) == 1 and "not reached" in result.warnings[0]


def test_the_command_line_shows_hub_failures_and_succeeds(cli, project):
    with hub(status=503) as (url, pings):
        with (project / "config.yaml").open("a", encoding="utf-8") as handle:
            handle.write(f"feeds:\n  websub_hub: {url}\n")
        done = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert done.returncode == 0, done.stderr
    assert pings and "warning: WebSub hub" in done.stderr and "answered 503" in done.stderr


def test_feeds_with_a_hub_pass_the_w3c_validator(site_config, site_digests):
    """feedcheck.py (the W3C validator's code) on feeds that declare a hub."""
    from test_feed_text import FEEDCHECK, assert_feedcheck_clean

    if FEEDCHECK is None:
        pytest.skip("../shared/tools/feedcheck.py is absent")
    config = with_hub(site_config, "https://hub.example.org/")
    write_site(config, site_digests)
    public = config.paths.public
    for relative in ("feeds/ko/atom.xml", "feeds/en/rss.xml", "feeds/both/tags/moe/atom.xml"):
        assert_feedcheck_clean(public / relative, "https://example.org/papers/" + relative)
