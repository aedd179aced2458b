"""JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/) from the same FeedInfo
and FeedItems as Atom and RSS.

Dates are RFC 3339 in site.timezone; an item's `date_modified` is when its
text last changed, made unique within the feed as in Atom. Text stays text:
`title` and `summary` are plain strings (JSON escapes them), `content_html`
is the item's HTML. Keys keep a fixed order and Hangul is written as is
(UTF-8), so the same digests give the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from newsletter.feeds.atom import clean
from newsletter.feeds.items import FeedInfo, FeedItem
from newsletter.revisions import distinct_times

VERSION = "https://jsonfeed.org/version/1.1"
MEDIA_TYPE = "application/feed+json"


def build_json_feed(info: FeedInfo, items: list[FeedItem]) -> bytes:
    """One JSON Feed document, items in the given order."""
    times = distinct_times([item.updated for item in items])
    feed: dict[str, Any] = {
        "version": VERSION,
        "title": clean(info.title),
        "home_page_url": info.alternate,
        "feed_url": info.self_urls["json"],
        "description": clean(info.subtitle or info.title),
        "language": info.language,
        "authors": [{"name": clean(info.author)}],
    }
    if info.hub:
        feed["hubs"] = [{"type": "WebSub", "url": info.hub}]
    feed["items"] = [_item(item, updated) for item, updated in zip(items, times, strict=True)]
    # Compact: the C encoder (indent= would take the slow Python one).
    return (json.dumps(feed, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _item(item: FeedItem, updated: object) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": item.id,
        "url": item.link,
        "title": clean(item.title),
        "content_html": clean(item.content),
        "summary": clean(item.summary),
        "date_published": item.published.isoformat(),
        "date_modified": updated.isoformat(),  # type: ignore[attr-defined]
    }
    if item.external_url:
        out["external_url"] = item.external_url
    if item.categories:
        out["tags"] = [clean(tag) for tag in item.categories]
    return out
