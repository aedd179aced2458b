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
import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from newsletter import render
from newsletter.model import Digest
from newsletter.outputs import Output, key_of
from newsletter.revisions import Revisions, issue_key
from newsletter.site import paths

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.site.pages import SiteContext

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


def issue_time(
    config: Config, revisions: Revisions, digest: Digest, edition: str, *, check: bool = False
) -> dt.datetime:
    """When an issue's text last changed in an edition (newsletter.revisions);
    check: hash its text even if a time is known (its content may have changed)."""
    key = issue_key(edition, digest.date)
    known = None if check else revisions.time(key)
    if known is not None:
        return known
    first = dt.datetime.combine(digest.date, dt.time(0, 0), tzinfo=config.site.tz)
    return revisions.changed(key, (digest.date, render.paper_views(digest, edition)), first)


def sitemap_outputs(
    site: SiteContext,
    issues: list[Digest],
    groups: list[render.TagGroup],
    revisions: Revisions,
    date: dt.date | None,
) -> list[Output]:
    """sitemap.xml, sitemaps/E-YYYY.xml and sitemaps/lists.xml (lists and the
    weekly pages) as planned outputs; with a date, only that date's year of
    issue sitemaps.
    Takes each issue's revision time (issue_time)."""
    from newsletter.site.indexes import Pagination
    from newsletter.site.weekly import week_page_path, weeks_of

    config = site.config
    weeks = weeks_of(config, issues)
    base = config.site.base_url
    children: list[tuple[str, dt.datetime | None]] = []
    outputs: list[Output] = []
    lists: list[tuple[str, dt.datetime | None]] = []
    all_times = []
    for edition in config.editions:
        times = {d.date: issue_time(config, revisions, d, edition) for d in issues}
        all_times += times.values()
        by_year = itertools.groupby(reversed(issues), key=lambda d: d.date.year)
        for year, group in by_year:
            days = list(group)
            path = f"sitemaps/{edition}-{year}.xml"
            children.append((base + path, max(times[d.date] for d in days)))
            if date is None or date.year == year:
                entries = [
                    (paths.page_url(config, paths.issue_path(edition, d.date)), times[d.date])
                    for d in days
                ]
                outputs.append(
                    Output(path, key_of("sitemap", entries), lambda e=entries: urlset(e))
                )
        # Every issue has a time (issue_time): max, not newest, over the lists.
        paging = Pagination(len(issues), config.site.page_size)
        latest = newest(times.values())
        lists.append((paths.page_url(config, paths.edition_index_path(edition)), latest))
        for number in paging.numbered:
            start, stop = paging.bounds(number)
            when = max(times[d.date] for d in issues[start:stop])
            lists.append((paths.page_url(config, paths.edition_index_path(edition, number)), when))
        lists.append((paths.page_url(config, paths.tag_index_path(edition)), latest))
        for group in groups:
            tag_paging = Pagination(len(group.papers), config.site.page_size)
            papers_times = [times[p.digest.date] for p in group.papers]
            when = max(papers_times[: tag_paging.size])
            lists.append((paths.page_url(config, paths.tag_page_path(edition, group.name)), when))
            for number in tag_paging.numbered:
                start, stop = tag_paging.bounds(number)
                when = max(papers_times[start:stop])
                lists.append(
                    (paths.page_url(config, paths.tag_page_path(edition, group.name, number)), when)
                )
        for week, days in sorted(weeks.items()):
            when = max(times[d.date] for d in days)
            lists.append((paths.page_url(config, week_page_path(edition, week)), when))
        if site.search:
            lists.append((paths.page_url(config, paths.search_page_path(edition)), None))
    lists.insert(0, (base, newest(all_times)))
    outputs.append(Output("sitemaps/lists.xml", key_of("sitemap", lists), lambda: urlset(lists)))
    children.append((base + "sitemaps/lists.xml", newest(t for _, t in lists)))
    children.sort()
    outputs.append(
        Output("sitemap.xml", key_of("index", children), lambda: sitemap_index(children))
    )
    return outputs
