"""The weekly archive: a page per week per edition, and a weekly feed per edition.

Layout under paths.public (E is an edition):

    E/weekly/2025-W15/index.html     the week's papers by day, newest first: the
                                     page the weekly email's "view in browser"
                                     opens (paper ids DATE-ANCHOR)
    feeds/E/weekly/atom.xml, rss.xml one item per week whose email is due,
                                     newest first

A week is the seven days one weekly email holds (`Week.period` with
`schedule.weekly_day`). A week's page exists once it has an issue and changes
while its days come in; its feed item appears at its send time (the time of
the weekly email) and keeps that time. Written by `site.write_site` (a full
build: every week; a day: that day's week) and by `publish --week`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from newsletter import render
from newsletter.model import WEEKDAYS, Digest, Edition, Week

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.site import SiteResult

WEEKLY_LABELS = {"ko": "주간", "en": "Weekly"}


def weekly_day(config: Config) -> int:
    """schedule.weekly_day as a weekday number (0 = Monday)."""
    return WEEKDAYS.index(config.schedule.weekly_day)


def weeks_of(config: Config, digests: Iterable[Digest]) -> dict[Week, list[Digest]]:
    """Each week that has an issue, with its issues newest first."""
    day = weekly_day(config)
    weeks: dict[Week, list[Digest]] = {}
    for digest in sorted(digests, key=lambda d: d.date, reverse=True):
        weeks.setdefault(Week.holding(digest.date, day), []).append(digest)
    return weeks


def week_page_path(edition: str, week: Week) -> str:
    return f"{edition}/weekly/{week.isoformat()}/index.html"


def weekly_files(
    config: Config,
    digests: Iterable[Digest],
    *,
    weeks: Iterable[Week] | None = None,
    now: dt.datetime | None = None,
) -> dict[str, bytes]:
    """The pages of `weeks` (None: every week with an issue) and every weekly feed.

    `now` (aware; default: the clock) decides which weeks are in the feeds:
    those whose weekly email is due.
    """
    from newsletter.feeds import build_feed
    from newsletter.scheduler import send_datetime

    by_week = weeks_of(config, digests)
    chosen = sorted(by_week if weeks is None else set(weeks) & set(by_week), reverse=True)
    now = now or dt.datetime.now(config.site.tz)
    day = weekly_day(config)

    def due(week: Week) -> dt.datetime:
        return send_datetime(week.send_day(day), config.schedule.send_clock, config.site.tz)

    files: dict[str, bytes] = {}
    for edition in config.editions:
        for week in chosen:
            files[week_page_path(edition, week)] = _render_week(
                config, week, by_week[week], edition
            )
        done = [week for week in sorted(by_week, reverse=True) if due(week) <= now]
        items = [
            _item(config, week, by_week[week], edition, due(week))
            for week in done[: config.feeds.max_items]
        ]
        info = _info(config, edition)
        for kind in ("atom", "rss"):
            files[f"feeds/{edition}/weekly/{kind}.xml"] = build_feed(info, items, kind)
    return files


def write_weekly(
    config: Config,
    digests: Iterable[Digest],
    week: Week,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> SiteResult:
    """Write one week's pages and the weekly feeds (only files that changed), and
    add them to the build manifest so a full build keeps them up to date."""
    from newsletter.site import SiteResult, Writer, read_build_manifest, write_manifest

    public = config.paths.public
    manifest = read_build_manifest(public)
    writer = Writer(public, dry_run)
    writer.write_all(weekly_files(config, digests, weeks=[week], now=now))
    if not dry_run:
        write_manifest(public, manifest.files | writer.paths, manifest.revisions)
    return SiteResult(tuple(sorted(writer.written)), writer.unchanged, ())


# --- the page -----------------------------------------------------------------------


def _span(config: Config, week: Week, language: str) -> str:
    period = week.period(weekly_day(config))
    return render.format_span(period[0], period[-1], language)


def _render_week(config: Config, week: Week, days: list[Digest], edition: str) -> bytes:
    from newsletter.site import edition_feeds, render_page

    language = Edition(edition).language
    sections = []
    for digest in days:
        papers = [
            dataclasses.replace(p, anchor=f"{digest.date.isoformat()}-{p.anchor}")
            for p in render.paper_views(digest, edition)
        ]
        sections.append(
            {
                "date_iso": digest.date.isoformat(),
                "date_text": render.format_date(digest.date, language),
                "papers": papers,
            }
        )
    count = sum(len(d.entries) for d in days)
    span = _span(config, week, language)
    return render_page(
        config,
        "site/weekly.html",
        page_lang=language,
        edition=edition,
        root="../../../",
        page_title=f"{WEEKLY_LABELS[language]} · {span} · {config.site.title}",
        canonical=render.weekly_url(config, week, edition),
        feeds=[*_weekly_feeds(config, edition), *edition_feeds(config, edition)],
        weekly_label=WEEKLY_LABELS[language],
        span_text=span,
        count_text=render.paper_count(count, language),
        days=sections,
    )


# --- the feed -----------------------------------------------------------------------


def weekly_feed_url(config: Config, edition: str, kind: str = "atom") -> str:
    return f"{config.site.base_url}feeds/{edition}/weekly/{kind}.xml"


def _weekly_feeds(config: Config, edition: str) -> list[object]:
    from newsletter.site import FeedLink

    name = f"{render.EDITION_NAMES[edition][0]} · {WEEKLY_LABELS[Edition(edition).language]}"
    return [
        FeedLink("application/atom+xml", f"{name} · Atom", weekly_feed_url(config, edition)),
        FeedLink("application/rss+xml", f"{name} · RSS", weekly_feed_url(config, edition, "rss")),
    ]


def _info(config: Config, edition: str) -> object:
    from newsletter.feeds import FeedInfo

    language = Edition(edition).language
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=weekly_feed_url(config, edition),
        title=f"{config.site.title} · {name} · {WEEKLY_LABELS[language]}",
        subtitle=config.site.description,
        language=language,
        author=config.site.author or config.site.title,
        alternate=f"{config.site.base_url}{edition}/",
        self_urls={kind: weekly_feed_url(config, edition, kind) for kind in ("atom", "rss")},
    )


def _item(
    config: Config, week: Week, days: list[Digest], edition: str, when: dt.datetime
) -> object:
    from newsletter.feeds import FeedItem

    language = Edition(edition).language
    url = render.weekly_url(config, week, edition)
    titles = [entry.title for digest in days for entry in digest.entries]
    count = render.paper_count(len(titles), language)
    links = "".join(
        f'<li><a href="{render.issue_url(config, d.date, edition)}">'
        f"{render.format_date(d.date, language)}</a> · "
        f"{render.paper_count(len(d.entries), language)}</li>"
        for d in days
    )
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
