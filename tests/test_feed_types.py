"""Feeds are served with their own media types by both servers of paths.public:
`newsletter serve` (uvicorn, real) and `newsletter preview` (the real CLI)."""

from __future__ import annotations

import json
import urllib.request

from lxml import etree
from test_everyday import _preview
from test_web import HANGUL, server

from newsletter.publish import scan
from newsletter.site import write_site

__all__ = ["server"]  # the web service fixture, used by name

# path under the site -> its Content-Type
FEEDS = {
    "feeds/ko/atom.xml": "application/atom+xml; charset=utf-8",
    "feeds/ko/rss.xml": "application/rss+xml; charset=utf-8",
    "feeds/ko/feed.json": "application/feed+json",
    "feeds/en/tags/rl/atom.xml": "application/atom+xml; charset=utf-8",
    "feeds/en/tags/rl/feed.json": "application/feed+json",
}


def _check(base: str, method: str = "GET") -> None:
    for path, wanted in FEEDS.items():
        request = urllib.request.Request(base + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
            assert reply.headers["Content-Type"] == wanted, (path, method)
        if method == "HEAD":
            continue
        if path.endswith(".json"):
            assert json.loads(body)["version"] == "https://jsonfeed.org/version/1.1"
        else:
            root = etree.fromstring(body)
            assert root.tag in ("{http://www.w3.org/2005/Atom}feed", "rss"), path
        if "/ko/" in path:  # the Korean comments arrive as UTF-8 text
            assert HANGUL.search(body.decode("utf-8")), path
    # Everything else keeps the usual guess.
    with urllib.request.urlopen(base + "sitemap.xml", timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith(("application/xml", "text/xml"))
    with urllib.request.urlopen(base + "ko/", timeout=10) as reply:
        assert reply.headers["Content-Type"] == "text/html; charset=utf-8"


def test_serve_gives_feeds_their_media_types(server) -> None:
    config = server.config
    write_site(config, scan(config).digests)
    _check(server.client.base)
    _check(server.client.base, "HEAD")


def test_preview_gives_feeds_the_same_media_types(project, tmp_path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    process, base = _preview(project, tmp)
    try:
        _check(base)
        _check(base, "HEAD")
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=120)  # a guard against a hang
    assert "Traceback" not in err
