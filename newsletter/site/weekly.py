"""The weekly archive: a page per week per edition, and a weekly feed per edition.

Layout under paths.public (E is an edition):

    E/weekly/2025-W15/index.html         the week's papers by day, newest first:
                                         the page the weekly email's "view in
                                         browser" opens (paper ids DATE-ANCHOR)
    feeds/E/weekly/atom.xml, rss.xml,    one item per week whose email is due,
      feed.json                          newest first

A week is the seven days one weekly email holds (`Week.period` with
`schedule.weekly_day`). A week's page exists once it has an issue and changes
while its days come in; its feed item appears at its send time (the time of
the weekly email) and keeps that time. Planned by `build.write_site` (a full
build: every week; a day: that day's week), and written by `write_weekly`
(`publish --week`, and the daemon when the weekly email goes out).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from newsletter import render
from newsletter.model import WEEKDAYS, Digest, Edition, Week
from newsletter.outputs import DigestKeys, Output, environment_key, key_of
from newsletter.site.pages import (
    FeedLink,
    SiteContext,
    edition_feeds,
    long_date,
    papers_html,
    render_page,
)

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.feeds import FeedInfo, FeedItem
    from newsletter.site.build import SiteResult

WEEKLY_LABELS = render.WEEKLY_LABELS


def weekly_day(config: Config) -> int:
    """schedule.weekly_day as a weekday number (0 = Monday)."""
    return WEEKDAYS.index(config.schedule.weekly_day)


def weeks_of(config: Config, digests: Iterable[Digest]) -> dict[Week, list[Digest]]:
    """Each week that has an issue, with its issues newest first."""
    day = weekly_day(config)
    weeks: dict[Week, list[Digest]] = {}
    for digest in sorted(digests, key=lambda d: d.date, reverse=True):
        weeks.setdefault(_week_holding(digest.date, day), []).append(digest)
    return weeks


@functools.lru_cache(maxsize=65536)
def _week_holding(date: dt.date, day: int) -> Week:
    """Week.holding, remembered: a build asks for every day's week twice."""
    return Week.holding(date, day)


def week_page_path(edition: str, week: Week) -> str:
    return f"{edition}/weekly/{week.isoformat()}/index.html"


def week_due(config: Config, week: Week) -> dt.datetime:
    """When the weekly email of `week` goes out: send_time on its weekly day."""
    from newsletter.send_times import send_datetime

    return send_datetime(
        week.send_day(weekly_day(config)), config.schedule.send_clock, config.site.tz
    )


def weekly_outputs(
    site: SiteContext,
    issues: Iterable[Digest],
    *,
    env: str,
    keys: DigestKeys,
    now: dt.datetime,
    weeks: Iterable[Week] | None = None,
) -> Iterator[Output]:
    """The pages of `weeks` (None: every week with an issue) and every weekly
    feed, keyed by the digests they show; `now` decides which weeks the feeds
    list (those whose weekly email is due)."""
    config = site.config
    by_week = weeks_of(config, issues)
    chosen = sorted(by_week if weeks is None else set(weeks) & set(by_week), reverse=True)
    schedule = (config.schedule.weekly_day, config.schedule.send_time)
    # The newest weeks whose email is due (a later week is due later).
    due = list(
        itertools.islice(
            itertools.dropwhile(lambda w: week_due(config, w) > now, sorted(by_week, reverse=True)),
            config.feeds.max_items,
        )
    )
    for edition in config.editions:
        for week in chosen:
            days = by_week[week]
            yield Output(
                week_page_path(edition, week),
                key_of(env, "weekly", edition, week, schedule, [keys(d) for d in days]),
                lambda week=week, days=days, edition=edition: _page(site, week, days, edition),
                pure=True,
                day=days[0].date,
            )
        listed = [(week, [keys(d) for d in by_week[week]]) for week in due]
        base = key_of(env, "weeklyfeed", edition, schedule, listed)
        info = _info(config, edition)
        items = [_item(config, week, by_week[week], edition) for week in due]
        yield from _feed_outputs(edition, base, info, items)


def write_weekly(
    config: Config,
    digests: Iterable[Digest],
    week: Week,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> SiteResult:
    """Write one week's pages and the weekly feeds (only what changed) and record
    them in the build manifest, so the next full build keeps them current."""
    from newsletter.site.build import SiteResult
    from newsletter.site.manifest import read_build_manifest, write_manifest
    from newsletter.site.writer import Writer

    public = config.paths.public
    manifest = read_build_manifest(public)
    env = environment_key(config) + ("+search" if config.site.search else "")
    site = SiteContext(config, config.site.search, env)
    writer = Writer(public, dry_run, manifest.keys)
    now = now or dt.datetime.now(config.site.tz)
    try:
        writer.add(weekly_outputs(site, digests, env=env, keys=DigestKeys(), now=now, weeks=[week]))
    except BaseException:
        writer.discard()  # no temp file (or staging folder) is left
        raise
    writer.flush()
    if not dry_run:
        keep = manifest.keys | writer.keys
        write_manifest(public, keep, manifest.revisions, manifest.search)
    return SiteResult(tuple(sorted(writer.written)), writer.unchanged, ())


# --- the page -----------------------------------------------------------------------


def _span(config: Config, week: Week, language: str) -> str:
    period = week.period(weekly_day(config))
    return render.format_span(period[0], period[-1], language)


def _page(site: SiteContext, week: Week, days: list[Digest], edition: str) -> bytes:
    config = site.config
    language = Edition(edition).language
    sections = []
    splices = site.splices("site/weekly.html")
    for digest in days:
        date_iso = digest.date.isoformat()
        html = papers_html(
            site, digest, edition, splices, tag_prefix="../../tags/", id_prefix=f"{date_iso}-"
        )
        sections.append(
            {
                "date_iso": date_iso,
                "date_text": long_date(digest.date, language),
                "papers": [
                    dataclasses.replace(p, anchor=f"{date_iso}-{p.anchor}")
                    for p in render.paper_views(digest, edition)
                ],
                "papers_html": html,
            }
        )
    span = _span(config, week, language)
    return render_page(
        site,
        "site/weekly.html",
        week_page_path(edition, week),
        edition=edition,
        page_lang=language,
        page_title=f"{WEEKLY_LABELS[language]} · {span} · {config.site.title}",
        canonical=render.weekly_url(config, week, edition),
        feeds=[*weekly_feeds(config, edition), *edition_feeds(config, edition)],
        weekly_label=WEEKLY_LABELS[language],
        span_text=span,
        count_text=render.paper_count(sum(len(d.entries) for d in days), language),
        days=sections,
        splices=splices,
    )


# --- the feed -----------------------------------------------------------------------


def weekly_feeds(config: Config, edition: str) -> list[FeedLink]:
    """An edition's weekly feeds, for autodiscovery."""
    name = f"{render.EDITION_NAMES[edition][0]} · {WEEKLY_LABELS[Edition(edition).language]}"
    types = {"atom": "application/atom+xml", "rss": "application/rss+xml"}
    types["json"] = "application/feed+json"
    labels = {"atom": "Atom", "rss": "RSS", "json": "JSON Feed"}
    return [
        FeedLink(
            types[kind], f"{name} · {labels[kind]}", render.weekly_feed_url(config, edition, kind)
        )
        for kind in ("atom", "rss", "json")
    ]


def _feed_outputs(
    edition: str, base: str, info: FeedInfo, items: list[FeedItem]
) -> Iterator[Output]:
    from newsletter.feeds import build_feed, build_json_feed

    folder = f"feeds/{edition}/weekly/"
    for kind in ("atom", "rss"):
        yield Output(
            folder + render.FEED_FILES[kind],
            key_of(base, kind),
            lambda kind=kind: build_feed(info, items, kind),
        )
    yield Output(
        folder + render.FEED_FILES["json"],
        key_of(base, "json"),
        lambda: build_json_feed(info, items),
    )


def _info(config: Config, edition: str) -> FeedInfo:
    from newsletter.feeds import FeedInfo
    from newsletter.feeds.items import author

    language = Edition(edition).language
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=render.weekly_feed_url(config, edition),
        title=f"{config.site.title} · {name} · {WEEKLY_LABELS[language]}",
        subtitle=config.site.description,
        language=language,
        author=author(config),
        alternate=f"{config.site.base_url}{edition}/",
        self_urls={k: render.weekly_feed_url(config, edition, k) for k in ("atom", "rss", "json")},
        hub=config.feeds.websub_hub,
    )


def _item(config: Config, week: Week, days: list[Digest], edition: str) -> FeedItem:
    from markupsafe import escape

    from newsletter.feeds import FeedItem

    language = Edition(edition).language
    url = render.weekly_url(config, week, edition)
    titles = [entry.title for digest in days for entry in digest.entries]
    count = render.paper_count(len(titles), language)
    links = "".join(
        f'<li><a href="{escape(render.issue_url(config, d.date, edition))}">'
        f"{escape(long_date(d.date, language))}</a> · "
        f"{escape(render.paper_count(len(d.entries), language))}</li>"
        for d in days
    )
    when = week_due(config, week)
    return FeedItem(
        id=url,  # the week and the edition: readers of several editions keep both
        title=f"{WEEKLY_LABELS[language]} · {_span(config, week, language)} · {count}",
        link=url,
        published=when,
        updated=when,
        summary=" · ".join(titles),
        content=f"<ul>{links}</ul>",
        categories=tuple(dict.fromkeys(tag for d in days for tag in d.tags)),
    )
