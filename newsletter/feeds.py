"""Atom and RSS feeds (feedgen): per edition, and an Atom feed per edition's tag.

    feeds/E/atom.xml, feeds/E/rss.xml     one item per issue, newest first
    feeds/E/tags/TAG/atom.xml             one item per paper with that tag

Items are first built as neutral FeedItem values (content rendered once per
edition), then written by one FeedGenerator per output format, because the
rel="self" link differs. Everything that feedgen would otherwise take from the
clock (`updated`, `lastBuildDate`) or from its own version (`generator`) is set
from the data, so two builds of the same digests are byte-identical.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from newsletter import render
from newsletter.model import Digest, Edition

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator

    from newsletter.config import Config

FeedKind = Literal["atom", "rss"]

# XML 1.0 forbids C0 controls (but tab, LF, CR), U+FFFE/U+FFFF and lone
# surrogates; lxml refuses them. C1 controls are legal but never meant.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")

_MEDIA_TYPES = {"atom": "application/atom+xml", "rss": "application/rss+xml"}


@dataclass(frozen=True)
class FeedItem:
    id: str
    title: str
    link: str
    published: dt.datetime
    summary: str
    content: str  # HTML
    categories: tuple[str, ...]


@dataclass(frozen=True)
class FeedInfo:
    id: str
    title: str
    subtitle: str
    language: str
    author: str
    alternate: str  # the HTML page this feed follows
    self_urls: dict[str, str]  # by kind
    updated: dt.datetime


def feed_files(config: Config, digests: Iterable[Digest]) -> dict[str, bytes]:
    """Every feed: Atom and RSS per edition, and Atom per tag and edition."""
    issues = sorted(digests, key=lambda digest: digest.date, reverse=True)
    groups = render.tag_groups(issues)
    files: dict[str, bytes] = {}
    for edition in config.editions:
        items = _ItemMaker(config, edition)
        recent = issues[: config.feeds.max_items]
        info = _edition_info(config, edition, recent)
        entries = [items.issue(digest) for digest in recent]
        for kind in ("atom", "rss"):
            files[f"feeds/{edition}/{kind}.xml"] = build_feed(info, entries, kind)
        for group in groups:
            tagged = group.papers[: config.feeds.max_items]
            info = _tag_info(config, edition, group, tagged)
            entries = [items.paper(paper) for paper in tagged]
            files[f"feeds/{edition}/tags/{group.slug}/atom.xml"] = build_feed(info, entries, "atom")
    return files


def issue_datetime(config: Config, date: dt.date) -> dt.datetime:
    """An issue's publication time: 00:00 of its date in site.timezone."""
    return dt.datetime.combine(date, dt.time(0, 0), tzinfo=config.site.tz)


def build_feed(info: FeedInfo, items: list[FeedItem], kind: FeedKind) -> bytes:
    """One feed document, items in the given order."""
    fg = _generator(info, kind)
    for item in items:
        _add_item(fg, item, info.author, kind)
    if kind == "atom":
        return fg.atom_str(pretty=True, encoding="UTF-8")
    return fg.rss_str(pretty=True, encoding="UTF-8")


def clean(text: str) -> str:
    """Text that XML can hold."""
    return _NOT_XML.sub("", text)


# --- feed and item values ---------------------------------------------------------


def _edition_info(config: Config, edition: str, recent: list[Digest]) -> FeedInfo:
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=render.feed_url(config, edition, "atom"),
        title=f"{config.site.title} · {name}",
        subtitle=config.site.description,
        language=Edition(edition).language,
        author=_author(config),
        alternate=f"{config.site.base_url}{edition}/",
        self_urls={kind: render.feed_url(config, edition, kind) for kind in _MEDIA_TYPES},
        updated=_updated(config, [digest.date for digest in recent]),
    )


def _tag_info(
    config: Config,
    edition: str,
    group: render.TagGroup,
    tagged: tuple[render.TaggedPaper, ...],
) -> FeedInfo:
    name = render.EDITION_NAMES[edition][0]
    atom = render.feed_url(config, edition, "atom", tag=group.name)
    return FeedInfo(
        id=atom,
        title=f"#{group.name} · {config.site.title} · {name}",
        subtitle=config.site.description,
        language=Edition(edition).language,
        author=_author(config),
        alternate=render.tag_url(config, group.name, edition),
        self_urls={"atom": atom},
        updated=_updated(config, [paper.digest.date for paper in tagged]),
    )


class _ItemMaker:
    """Feed items of one edition; a paper's views and HTML are made once, however
    many tag feeds it is in (a full build of 1,000 issues would otherwise
    render each paper once per tag)."""

    def __init__(self, config: Config, edition: str) -> None:
        self.config = config
        self.edition = edition
        self.language = Edition(edition).language
        self._views: dict[dt.date, tuple[render.PaperView, ...]] = {}
        self._paper_html: dict[tuple[dt.date, int], str] = {}

    def views(self, digest: Digest) -> tuple[render.PaperView, ...]:
        if digest.date not in self._views:
            self._views[digest.date] = render.paper_views(digest, self.edition)
        return self._views[digest.date]

    def issue(self, digest: Digest) -> FeedItem:
        papers = self.views(digest)
        url = render.issue_url(self.config, digest.date, self.edition)
        return FeedItem(
            # The archive URL holds both the date and the edition: readers that
            # follow several editions must not merge their items.
            id=url,
            title=f"{render.format_date(digest.date, self.language)} · "
            f"{render.paper_count(len(papers), self.language)}",
            link=url,
            published=issue_datetime(self.config, digest.date),
            summary=" · ".join(paper.title for paper in papers),
            content=self._render("feed/issue.html", url, papers=papers),
            categories=digest.tags,
        )

    def paper(self, tagged: render.TaggedPaper) -> FeedItem:
        date = tagged.digest.date
        paper = self.views(tagged.digest)[tagged.index]
        url = render.issue_url(self.config, date, self.edition)
        if (date, tagged.index) not in self._paper_html:
            self._paper_html[date, tagged.index] = self._render("feed/paper.html", url, paper=paper)
        return FeedItem(
            id=f"{url}#{paper.anchor}",
            title=paper.title,
            link=f"{url}#{paper.anchor}",
            published=issue_datetime(self.config, date),
            summary=" ".join(comment.text for comment in paper.comments) or paper.title,
            content=self._paper_html[date, tagged.index],
            categories=tuple(tag.name for tag in paper.tags),
        )

    def _render(self, template: str, page_url: str, **values: object) -> str:
        html = (
            render.environment(self.config)
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


def _updated(config: Config, dates: list[dt.date]) -> dt.datetime:
    """The newest item's time, never now(); a feed with no items gets the epoch."""
    if not dates:
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return issue_datetime(config, max(dates))


def _author(config: Config) -> str:
    # Atom needs an author; the site's name stands in when none is configured.
    return config.site.author or config.site.title


# --- feedgen ------------------------------------------------------------------------


def _generator(info: FeedInfo, kind: FeedKind) -> FeedGenerator:
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    if kind == "rss":
        # RSS <author> needs an email address; dc:creator takes a name.
        fg.load_extension("dc", atom=False, rss=True)
    fg.id(info.id)
    fg.title(clean(info.title))
    fg.subtitle(clean(info.subtitle) or clean(info.title))
    fg.language(info.language)
    fg.author(name=clean(info.author))
    fg.generator("newsletter")  # feedgen's default names its own version
    fg.updated(info.updated)
    fg.link(href=info.self_urls[kind], rel="self", type=_MEDIA_TYPES[kind])
    # Last: RSS's <link> is taken from the last link() call.
    fg.link(href=info.alternate, rel="alternate", type="text/html")
    return fg


def _add_item(fg: FeedGenerator, item: FeedItem, author: str, kind: FeedKind) -> None:
    entry = fg.add_entry(order="append")
    entry.guid(item.id, permalink=True)
    entry.title(clean(item.title))
    entry.link(href=item.link, rel="alternate", type="text/html")
    entry.published(item.published)
    entry.updated(item.published)
    entry.summary(clean(item.summary))
    entry.content(clean(item.content), type="html")
    for category in item.categories:
        entry.category(term=clean(category))
    if kind == "rss":
        entry.dc.dc_creator(clean(author))
