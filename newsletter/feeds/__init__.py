"""Feeds per edition and per tag, in Atom, RSS and JSON Feed 1.1; an OPML list
of them all; WebSub notifications when they change.

    feeds/E/atom.xml, rss.xml, feed.json     one item per issue, newest first
    feeds/E/tags/TAG/atom.xml, feed.json     one item per paper with that tag
    feeds.opml                               every feed (newsletter.feeds.opml)

Items are first built as neutral FeedItem values (newsletter.feeds.items,
content rendered once per edition), then written in each format (atom.py,
jsonfeed.py), because the rel="self" link and the encoding differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from newsletter import render
from newsletter.feeds.atom import build_feed, clean
from newsletter.feeds.items import (
    FeedInfo,
    FeedItem,
    ItemMaker,
    edition_info,
    issue_datetime,
    tag_info,
)
from newsletter.feeds.jsonfeed import build_json_feed
from newsletter.model import Digest
from newsletter.outputs import DigestKeys, Output, key_of
from newsletter.revisions import Revisions

if TYPE_CHECKING:
    from newsletter.config import Config

__all__ = [
    "FeedInfo",
    "FeedItem",
    "build_feed",
    "build_json_feed",
    "clean",
    "feed_files",
    "feed_outputs",
    "issue_datetime",
]


def feed_outputs(
    config: Config,
    issues: list[Digest],
    groups: list[render.TagGroup],
    revisions: Revisions,
    *,
    env: str = "",
    keys: DigestKeys | None = None,
    tags: set[str] | None = None,
) -> Iterator[Output]:
    """Every feed file as a planned output, keyed by the digests it lists.

    issues: newest first; groups: render.tag_groups(issues); tags: the slugs
    whose tag feeds to plan (None: all).
    """
    keys = keys or DigestKeys()
    limit = config.feeds.max_items
    for edition in config.editions:
        items = ItemMaker(config, edition, revisions)
        recent = issues[:limit]
        info = edition_info(config, edition)
        base = key_of(env, "feed", edition, [keys(d) for d in recent])

        def entries(recent: list[Digest] = recent, items: ItemMaker = items) -> list[FeedItem]:
            return [items.issue(digest) for digest in recent]

        yield from _formats(f"feeds/{edition}/", base, info, entries, ("atom", "rss", "json"))
        for group in groups:
            if tags is not None and group.slug not in tags:
                continue
            tagged = group.papers[:limit]
            base = key_of(
                env,
                "tagfeed",
                edition,
                group.slug,
                group.name,
                [(keys(p.digest), p.index) for p in tagged],
            )

            def paper_entries(
                tagged: tuple[render.TaggedPaper, ...] = tagged, items: ItemMaker = items
            ) -> list[FeedItem]:
                return [items.paper(paper) for paper in tagged]

            folder = f"feeds/{edition}/tags/{group.slug}/"
            yield from _formats(
                folder, base, tag_info(config, edition, group), paper_entries, ("atom", "json")
            )


def _formats(
    folder: str,
    base: str,
    info: FeedInfo,
    entries: Callable[[], list[FeedItem]],
    kinds: tuple[str, ...],
) -> Iterator[Output]:
    """One output per format of one feed; its items are built once, on demand."""
    cache: list[list[FeedItem]] = []

    def items() -> list[FeedItem]:
        if not cache:
            cache.append(entries())
        return cache[0]

    for kind in kinds:
        if kind == "json":
            render_one = lambda: build_json_feed(info, items())  # noqa: E731
        else:
            render_one = lambda kind=kind: build_feed(info, items(), kind)  # noqa: E731
        yield Output(folder + render.FEED_FILES[kind], key_of(base, kind), render_one)


def feed_files(
    config: Config, digests: Iterable[Digest], revisions: Revisions | None = None
) -> dict[str, bytes]:
    """Every feed, rendered: Atom, RSS and JSON per edition; Atom and JSON per
    tag and edition.

    revisions: the last build's item times (from the manifest) and this build's
    clock; None builds as if for the first time. It records this build's items.
    """
    revisions = revisions if revisions is not None else Revisions()
    issues = sorted(digests, key=lambda digest: digest.date, reverse=True)
    groups = render.tag_groups(issues)
    return {out.path: out.render() for out in feed_outputs(config, issues, groups, revisions)}
