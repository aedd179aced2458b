"""Feed items as neutral values: one per issue (edition feeds) or per paper (tag
feeds), built once and written in every format (Atom, RSS, JSON Feed).

A FeedItem's text fields are plain text and its content is HTML (rendered once
per edition from templates/feed/). To add a field that every format shows (a
date, say), add it to FeedItem, fill it in ItemMaker, and write it in each
format's writer. A paper's link (newsletter.papers) is a tag feed item's
`external_url`, written as JSON Feed's `external_url` and Atom's
`<link rel="related">`; RSS has no such field, and every format's content
HTML carries the links line.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from markupsafe import Markup

from newsletter import render, templating
from newsletter.model import Digest, Edition
from newsletter.revisions import Revisions, issue_key

if TYPE_CHECKING:
    from newsletter.config import Config

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class FeedItem:
    """One entry, format-neutral: text fields are plain text, content is HTML."""

    id: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime  # when its text last changed (>= published)
    summary: str
    content: str  # HTML
    categories: tuple[str, ...]
    external_url: str | None = None  # the paper itself (JSON Feed external_url)


@dataclass(frozen=True)
class FeedInfo:
    """A feed's own fields; `self_urls` by format (atom, rss, json)."""

    id: str
    title: str
    subtitle: str
    language: str
    author: str
    alternate: str  # the HTML page this feed follows
    self_urls: dict[str, str]
    hub: str | None = None  # WebSub hub (feeds.websub_hub)


def issue_datetime(config: Config, date: dt.date) -> dt.datetime:
    """An issue's publication time: 00:00 of its date in site.timezone."""
    return dt.datetime.combine(date, dt.time(0, 0), tzinfo=config.site.tz)


def author(config: Config) -> str:
    """The feeds' author: site.author, else the site's title (feeds need one)."""
    return config.site.author or config.site.title


def edition_info(config: Config, edition: str) -> FeedInfo:
    """An edition's feed: its id is the Atom URL, self links per format."""
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=render.feed_url(config, edition, "atom"),
        title=f"{config.site.title} · {name}",
        subtitle=config.site.description,
        language=Edition(edition).language,
        author=author(config),
        alternate=f"{config.site.base_url}{edition}/",
        self_urls={
            kind: render.feed_url(config, edition, kind) for kind in ("atom", "rss", "json")
        },
        hub=config.feeds.websub_hub,
    )


def tag_info(config: Config, edition: str, group: render.TagGroup) -> FeedInfo:
    """A tag's feed in one edition (Atom and JSON Feed)."""
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=render.feed_url(config, edition, "atom", tag=group.name),
        title=f"#{group.name} · {config.site.title} · {name}",
        subtitle=config.site.description,
        language=Edition(edition).language,
        author=author(config),
        alternate=render.tag_url(config, group.name, edition),
        self_urls={
            kind: render.feed_url(config, edition, kind, tag=group.name)
            for kind in ("atom", "json")
        },
        hub=config.feeds.websub_hub,
    )


class ItemMaker:
    """Feed items of one edition; a paper's views and HTML are made once, however
    many tag feeds it is in (a full build of 1,000 issues would otherwise
    render each paper once per tag)."""

    def __init__(self, config: Config, edition: str, revisions: Revisions) -> None:
        self.config = config
        self.edition = edition
        self.revisions = revisions
        self.language = Edition(edition).language
        self._views: dict[dt.date, tuple[render.PaperView, ...]] = {}
        self._paper_html: dict[tuple[dt.date, int], Markup] = {}
        self._issues: dict[dt.date, FeedItem] = {}

    def views(self, digest: Digest) -> tuple[render.PaperView, ...]:
        if digest.date not in self._views:
            self._views[digest.date] = render.paper_views(digest, self.edition)
        return self._views[digest.date]

    def issue(self, digest: Digest) -> FeedItem:
        if digest.date in self._issues:
            return self._issues[digest.date]
        papers = self.views(digest)
        url = render.issue_url(self.config, digest.date, self.edition)
        published = issue_datetime(self.config, digest.date)
        key = issue_key(self.edition, digest.date)
        item = FeedItem(
            # The archive URL holds both the date and the edition: readers that
            # follow several editions must not merge their items.
            id=url,
            title=f"{render.format_date(digest.date, self.language)} · "
            f"{render.paper_count(len(papers), self.language)}",
            link=url,
            published=published,
            updated=self.revisions.changed(key, (digest.date, papers), published),
            summary=" · ".join(paper.title for paper in papers),
            content=self._render(
                "feed/issue.html",
                url,
                papers=[self.paper_html(digest, index) for index in range(len(papers))],
            ),
            categories=digest.tags,
        )
        self._issues[digest.date] = item
        return item

    def paper(self, tagged: render.TaggedPaper) -> FeedItem:
        date = tagged.digest.date
        papers = self.views(tagged.digest)
        paper = papers[tagged.index]
        url = render.issue_url(self.config, date, self.edition)
        # Papers of one issue are a second apart, the first one latest, so tag
        # feeds have one `updated` per entry and readers keep the issue's order.
        offset = dt.timedelta(seconds=len(papers) - 1 - tagged.index)
        published = issue_datetime(self.config, date) + offset
        key = f"{issue_key(self.edition, date)}#{paper.anchor}"
        return FeedItem(
            id=f"{url}#{paper.anchor}",
            title=paper.title,
            link=f"{url}#{paper.anchor}",
            published=published,
            updated=self.revisions.changed(key, (date, paper), published),
            summary=" ".join(comment.text for comment in paper.comments) or paper.title,
            content=self.paper_html(tagged.digest, tagged.index),
            categories=tuple(tag.name for tag in paper.tags),
            external_url=paper.link.url if paper.link else None,
        )

    def paper_html(self, digest: Digest, index: int) -> Markup:
        """One paper's feed HTML (templates/feed/paper.html), made once per build:
        issue items hold their papers', and a paper is in several tag feeds."""
        key = (digest.date, index)
        if key not in self._paper_html:
            url = render.issue_url(self.config, digest.date, self.edition)
            paper = self.views(digest)[index]
            self._paper_html[key] = Markup(self._render("feed/paper.html", url, paper=paper))
        return self._paper_html[key]

    def _render(self, template: str, page_url: str, **values: object) -> str:
        html = (
            templating.environment(self.config)
            .get_template(template)
            .render(
                page_lang=self.language,
                edition=self.edition,
                labels=render.LABELS[self.language],
                edition_names=render.EDITION_NAMES,
                page_url=page_url,
                tag_base=f"{self.config.site.base_url}{self.edition}/tags/",
                **values,
            )
        )
        return html.strip()
