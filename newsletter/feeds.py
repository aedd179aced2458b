"""Atom and RSS feeds (feedgen): per edition, and an Atom feed per edition's tag.

    feeds/E/atom.xml, feeds/E/rss.xml     one item per issue, newest first
    feeds/E/tags/TAG/atom.xml             one item per paper with that tag

Items are first built as neutral FeedItem values (content rendered once per
edition), then written by one FeedGenerator per output format, because the
rel="self" link differs. Everything that feedgen would otherwise take from the
clock (`updated`, `lastBuildDate`) or from its own version (`generator`) is set
from the data, so two builds of the same digests are byte-identical. An item's
`updated` is when its text last changed (newsletter.revisions): a correction
moves it, and the feed's `updated` / `lastBuildDate` (the newest item's).

Digest text is text, and each format gets it its own way (RFC 4287 3.1, RSS
2.0): readers take RSS `title` and `description` as HTML, so those are
HTML-escaped (then XML-escaped by lxml); RSS `category` and `dc:creator` are
plain. Atom text constructs stay `type="text"` unless the text holds `<` or
`&`, which some readers would take for markup: then `type="html"`, escaped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from markupsafe import escape

from newsletter import render
from newsletter.model import Digest, Edition
from newsletter.revisions import Revisions, distinct_times, issue_key

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
    """One entry, format-neutral: text fields are plain text, content is HTML."""

    id: str
    title: str
    link: str
    published: dt.datetime
    updated: dt.datetime  # when its text last changed (>= published)
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


def feed_files(
    config: Config, digests: Iterable[Digest], revisions: Revisions | None = None
) -> dict[str, bytes]:
    """Every feed: Atom and RSS per edition, and Atom per tag and edition.

    revisions: the last build's item times (from the manifest) and this build's
    clock; None builds as if for the first time. It records this build's items.
    """
    revisions = revisions if revisions is not None else Revisions()
    issues = sorted(digests, key=lambda digest: digest.date, reverse=True)
    groups = render.tag_groups(issues)
    files: dict[str, bytes] = {}
    for edition in config.editions:
        items = _ItemMaker(config, edition, revisions)
        recent = issues[: config.feeds.max_items]
        info = _edition_info(config, edition)
        entries = [items.issue(digest) for digest in recent]
        for kind in ("atom", "rss"):
            files[f"feeds/{edition}/{kind}.xml"] = build_feed(info, entries, kind)
        for group in groups:
            tagged = group.papers[: config.feeds.max_items]
            info = _tag_info(config, edition, group)
            entries = [items.paper(paper) for paper in tagged]
            files[f"feeds/{edition}/tags/{group.slug}/atom.xml"] = build_feed(info, entries, "atom")
    return files


def issue_datetime(config: Config, date: dt.date) -> dt.datetime:
    """An issue's publication time: 00:00 of its date in site.timezone."""
    return dt.datetime.combine(date, dt.time(0, 0), tzinfo=config.site.tz)


def build_feed(info: FeedInfo, items: list[FeedItem], kind: FeedKind) -> bytes:
    """One feed document, items in the given order.

    Each item's `updated` is made unique within the feed (a second earlier per
    clash), and the feed's `updated` / `lastBuildDate` is the newest of them
    (the epoch for a feed without items): never the clock.
    """
    times = distinct_times([item.updated for item in items])
    fg = _generator(info, kind, max(times, default=_EPOCH))
    for item, updated in zip(items, times, strict=True):
        _add_item(fg, item, updated, info.author, kind)
    if kind == "atom":
        return fg.atom_str(pretty=True, encoding="UTF-8")
    return _hex_references(fg.rss_str(pretty=True, encoding="UTF-8"))


def clean(text: str) -> str:
    """Text that XML can hold."""
    return _NOT_XML.sub("", text)


# --- feed and item values ---------------------------------------------------------


def _edition_info(config: Config, edition: str) -> FeedInfo:
    name = render.EDITION_NAMES[edition][0]
    return FeedInfo(
        id=render.feed_url(config, edition, "atom"),
        title=f"{config.site.title} · {name}",
        subtitle=config.site.description,
        language=Edition(edition).language,
        author=_author(config),
        alternate=f"{config.site.base_url}{edition}/",
        self_urls={kind: render.feed_url(config, edition, kind) for kind in _MEDIA_TYPES},
    )


def _tag_info(config: Config, edition: str, group: render.TagGroup) -> FeedInfo:
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
    )


class _ItemMaker:
    """Feed items of one edition; a paper's views and HTML are made once, however
    many tag feeds it is in (a full build of 1,000 issues would otherwise
    render each paper once per tag)."""

    def __init__(self, config: Config, edition: str, revisions: Revisions) -> None:
        self.config = config
        self.edition = edition
        self.revisions = revisions
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
        published = issue_datetime(self.config, digest.date)
        key = issue_key(self.edition, digest.date)
        return FeedItem(
            # The archive URL holds both the date and the edition: readers that
            # follow several editions must not merge their items.
            id=url,
            title=f"{render.format_date(digest.date, self.language)} · "
            f"{render.paper_count(len(papers), self.language)}",
            link=url,
            published=published,
            updated=self.revisions.changed(key, (digest.date, papers), published),
            summary=" · ".join(paper.title for paper in papers),
            content=self._render("feed/issue.html", url, papers=papers),
            categories=digest.tags,
        )

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
        if (date, tagged.index) not in self._paper_html:
            self._paper_html[date, tagged.index] = self._render("feed/paper.html", url, paper=paper)
        return FeedItem(
            id=f"{url}#{paper.anchor}",
            title=paper.title,
            link=f"{url}#{paper.anchor}",
            published=published,
            updated=self.revisions.changed(key, (date, paper), published),
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


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _author(config: Config) -> str:
    # Atom needs an author; the site's name stands in when none is configured.
    return config.site.author or config.site.title


# --- feedgen ------------------------------------------------------------------------


_RSS_TEXT = re.compile(rb"(<(title|description)>)([^<]*)(</\2>)")


def _hex_references(rss: bytes) -> bytes:
    """Write '&' and '<' in RSS titles and descriptions as &#x26; and &#x3C;, as
    the RSS Best Practices Profile asks (https://www.rssboard.org/rss-profile,
    "Character data"); the XML text is the same."""

    def encode(match: re.Match[bytes]) -> bytes:
        text = match.group(3).replace(b"&amp;", b"&#x26;").replace(b"&lt;", b"&#x3C;")
        return match.group(1) + text + match.group(4)

    return _RSS_TEXT.sub(encode, rss)


def _rss_text(text: str) -> str:
    """Text for an RSS element that readers take as HTML (title, description)."""
    return str(escape(clean(text)))


def _atom_text(text: str) -> tuple[str, str | None]:
    """(value, type) of an Atom text construct: text, or escaped HTML when the
    text holds '<' or '&' (so that no reader or validator sees markup in it)."""
    text = clean(text)
    if "<" in text or "&" in text:
        return str(escape(text)), "html"
    return text, None


def _set_atom_text(parent: Any, name: str) -> None:
    """Rewrite parent's Atom text element `name` by _atom_text (in place)."""
    # feedgen's children carry no namespace of their own (the root's default).
    element = parent.find(name)
    if element is None or element.text is None or element.get("type"):
        return
    value, kind = _atom_text(element.text)
    if kind is not None:
        element.text = value
        element.set("type", kind)


class _AtomTextFeed:
    """feedgen extension: the feed's title and subtitle as Atom text constructs."""

    def extend_ns(self) -> dict[str, str]:
        return {}

    def extend_atom(self, feed: Any) -> Any:
        for name in ("title", "subtitle"):
            _set_atom_text(feed, name)
        return feed

    def extend_rss(self, feed: Any) -> Any:
        return feed


class _AtomTextEntry(_AtomTextFeed):
    """feedgen extension: an entry's title and summary as Atom text constructs."""

    def extend_atom(self, entry: Any) -> Any:
        for name in ("title", "summary"):
            _set_atom_text(entry, name)
        return entry


def _generator(info: FeedInfo, kind: FeedKind, updated: dt.datetime) -> FeedGenerator:
    from feedgen.feed import FeedGenerator

    fg = FeedGenerator()
    if kind == "rss":
        # RSS <author> needs an email address; dc:creator takes a name.
        fg.load_extension("dc", atom=False, rss=True)
        text = _rss_text
    else:
        fg.register_extension("text", _AtomTextFeed, _AtomTextEntry, atom=True, rss=False)
        text = clean  # the extension picks text or html
    fg.id(info.id)
    fg.title(text(info.title))
    fg.subtitle(text(info.subtitle) or text(info.title))
    fg.language(info.language)
    fg.author(name=clean(info.author))
    fg.generator("newsletter")  # feedgen's default names its own version
    fg.updated(updated)  # Atom updated and RSS lastBuildDate
    fg.link(href=info.self_urls[kind], rel="self", type=_MEDIA_TYPES[kind])
    # Last: RSS's <link> is taken from the last link() call.
    fg.link(href=info.alternate, rel="alternate", type="text/html")
    return fg


def _add_item(
    fg: FeedGenerator, item: FeedItem, updated: dt.datetime, author: str, kind: FeedKind
) -> None:
    text = _rss_text if kind == "rss" else clean
    entry = fg.add_entry(order="append")
    entry.guid(item.id, permalink=True)
    entry.title(text(item.title))
    entry.link(href=item.link, rel="alternate", type="text/html")
    entry.published(item.published)
    entry.updated(updated)
    entry.summary(text(item.summary))
    entry.content(clean(item.content), type="html")
    for category in item.categories:
        entry.category(term=clean(category))
    if kind == "rss":
        entry.dc.dc_creator(clean(author))
