"""Atom and RSS (feedgen): one document per feed and format, items in order.

Everything that feedgen would otherwise take from the clock (`updated`,
`lastBuildDate`) or from its own version (`generator`) is set from the data,
so two builds of the same digests are byte-identical. An item's `updated` is
when its text last changed (newsletter.revisions): a correction moves it, and
the feed's `updated` / `lastBuildDate` (the newest item's).

Digest text is text, and each format gets it its own way (RFC 4287 3.1, RSS
2.0): readers take RSS `title` and `description` as HTML, so those are
HTML-escaped (then XML-escaped by lxml); RSS `category` and `dc:creator` are
plain. Atom text constructs stay `type="text"` unless the text holds `<` or
`&`, which some readers would take for markup: then `type="html"`, escaped.

A WebSub hub (feeds.websub_hub) is declared as `<link rel="hub">` (Atom) and
`<atom:link rel="hub">` (RSS), beside the `rel="self"` link, as WebSub 4
(https://www.w3.org/TR/websub/#discovery) asks.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, Literal

from markupsafe import escape

from newsletter.feeds.items import EPOCH, FeedInfo, FeedItem
from newsletter.revisions import distinct_times

if TYPE_CHECKING:
    from feedgen.feed import FeedGenerator


FeedKind = Literal["atom", "rss"]

# XML 1.0 forbids C0 controls (but tab, LF, CR), U+FFFE/U+FFFF and lone
# surrogates; lxml refuses them. C1 controls are legal but never meant.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")

_MEDIA_TYPES = {"atom": "application/atom+xml", "rss": "application/rss+xml"}


def build_feed(info: FeedInfo, items: list[FeedItem], kind: FeedKind) -> bytes:
    """One feed document, items in the given order.

    Each item's `updated` is made unique within the feed (a second earlier per
    clash), and the feed's `updated` / `lastBuildDate` is the newest of them
    (the epoch for a feed without items): never the clock.
    """
    times = distinct_times([item.updated for item in items])
    fg = _generator(info, kind, max(times, default=EPOCH))
    for item, updated in zip(items, times, strict=True):
        _add_item(fg, item, updated, info.author, kind)
    if kind == "atom":
        return fg.atom_str(pretty=True, encoding="UTF-8")
    return _hex_references(fg.rss_str(pretty=True, encoding="UTF-8"))


def clean(text: str) -> str:
    """Text that XML can hold."""
    return _NOT_XML.sub("", text)


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
    """feedgen extension: an entry's title and summary as Atom text constructs,
    and its `<link rel="related">` (feedgen 1.0 writes entry links without
    their rel, which would make a second alternate)."""

    related: str | None = None

    def extend_atom(self, entry: Any) -> Any:
        from lxml import etree

        for name in ("title", "summary"):
            _set_atom_text(entry, name)
        if self.related:
            etree.SubElement(entry, "link", href=self.related, rel="related")
        return entry


def _hub_extension(hub: str) -> type:
    """feedgen extension: RSS's <atom:link rel="hub"> after its self link."""

    class HubLink:
        def extend_ns(self) -> dict[str, str]:
            return {}

        def extend_rss(self, feed: Any) -> Any:
            from lxml import etree

            channel = feed.find("channel")
            atom = "{http://www.w3.org/2005/Atom}link"
            link = etree.Element(atom, href=hub, rel="hub")
            links = channel.findall(atom)
            position = list(channel).index(links[-1]) + 1 if links else len(channel)
            channel.insert(position, link)
            return feed

        def extend_atom(self, feed: Any) -> Any:
            return feed

    return HubLink


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
    if info.hub:
        if kind == "atom":
            fg.link(href=info.hub, rel="hub")
        else:  # feedgen writes only the self link into RSS
            fg.register_extension("hub", _hub_extension(info.hub), atom=False, rss=True)
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
    if item.external_url and kind == "atom":
        entry.text.related = clean(item.external_url)
    entry.published(item.published)
    entry.updated(updated)
    entry.summary(text(item.summary))
    entry.content(clean(item.content), type="html")
    for category in item.categories:
        entry.category(term=clean(category))
    if kind == "rss":
        entry.dc.dc_creator(clean(author))
