"""sitemap.xml and robots.txt (https://www.sitemaps.org/protocol.html).

`sitemap.xml` is a sitemap index; its sitemaps are `sitemaps/E-YYYY.xml`
(the issue pages of one edition and year) and `sitemaps/lists.xml` (the
landing page, edition indexes, tag pages and their numbered pages, search
pages), so publishing a day rewrites the small files that list it, and no
file nears the protocol's 50,000 URLs.

`lastmod` is when the page's content last changed: an issue page's is its
text's last change (newsletter.revisions: a correction moves it, a template
change does not); a list's is the newest of the issues it lists.

robots.txt allows everything and names the sitemap. Crawlers read robots.txt
only at a host's root: when site.base_url has a path, copy it there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from newsletter.config import Config

_URLSET = '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
_INDEX = '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def urlset(entries: Iterable[tuple[str, dt.datetime | None]]) -> bytes:
    """A sitemap: (absolute URL, lastmod) pairs in the given order."""
    return _document(_URLSET, "url", "urlset", entries)


def sitemap_index(entries: Iterable[tuple[str, dt.datetime | None]]) -> bytes:
    """The sitemap index: (sitemap URL, its newest lastmod) pairs."""
    return _document(_INDEX, "sitemap", "sitemapindex", entries)


def _document(
    opening: str, element: str, root: str, entries: Iterable[tuple[str, dt.datetime | None]]
) -> bytes:
    lines = [_HEAD, opening, "\n"]
    for url, lastmod in entries:
        lines.append(f"<{element}><loc>{escape(url)}</loc>")
        if lastmod is not None:
            lines.append(f"<lastmod>{lastmod.isoformat()}</lastmod>")
        lines.append(f"</{element}>\n")
    lines.append(f"</{root}>\n")
    return "".join(lines).encode("utf-8")


def robots_txt(config: Config) -> bytes:
    """Allow every crawler everywhere; point at the sitemap."""
    return (f"User-agent: *\nAllow: /\n\nSitemap: {config.site.base_url}sitemap.xml\n").encode()


def newest(times: Iterable[dt.datetime | None]) -> dt.datetime | None:
    """The latest of the known times (None when none is known)."""
    known = [when for when in times if when is not None]
    return max(known) if known else None
