"""The rules of JSON Feed 1.1 (https://www.jsonfeed.org/version/1.1/), as a checker.

`problems(document)` lists every rule a feed document breaks; an empty list
means valid. Written from the spec's text, field by field:

- top level: `version` (required, the 1.1 URL), `title` (required string),
  `items` (required array); `home_page_url`, `feed_url`, `description`,
  `user_comment`, `next_url`, `icon`, `favicon`, `language` strings;
  `expired` boolean; `authors` an array of author objects; `hubs` an array of
  objects with `type` and `url` strings;
- an item: `id` required, a string (the spec: "if an id is presented as a
  number ... should be coerced to a string"; we require a string); `url`,
  `external_url`, `title`, `content_html`, `content_text`, `summary`, `image`,
  `banner_image`, `language` strings; at least one of `content_html` and
  `content_text`; `date_published`, `date_modified` in RFC 3339 format;
  `tags` an array of strings; `authors` as above; `attachments` objects with
  `url` and `mime_type` strings;
- an author: an object with at least one of `name`, `url`, `avatar` (strings);
- URLs are absolute http(s) here (the spec asks for URLs, and relative ones
  are resolved by nobody); keys beginning with "_" are extensions; any other
  key is unknown.
"""

from __future__ import annotations

import re
from typing import Any

VERSION = "https://jsonfeed.org/version/1.1"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_URL = re.compile(r"^https?://[^\s]+$")

TOP_STRINGS = ("home_page_url", "feed_url", "description", "user_comment", "next_url")
TOP_STRINGS += ("icon", "favicon", "language")
TOP_URLS = ("home_page_url", "feed_url", "next_url", "icon", "favicon")
ITEM_STRINGS = ("url", "external_url", "title", "content_html", "content_text", "summary")
ITEM_STRINGS += ("image", "banner_image", "language", "date_published", "date_modified")
ITEM_URLS = ("url", "external_url", "image", "banner_image")
TOP_KEYS = {"version", "title", "items", "expired", "authors", "hubs", *TOP_STRINGS}
ITEM_KEYS = {"id", "tags", "authors", "attachments", *ITEM_STRINGS}


def problems(feed: Any) -> list[str]:
    """Every JSON Feed 1.1 rule the document breaks (empty: valid)."""
    out: list[str] = []
    if not isinstance(feed, dict):
        return ["the feed is not a JSON object"]
    if feed.get("version") != VERSION:
        out.append(f"version must be {VERSION!r}, not {feed.get('version')!r}")
    if not isinstance(feed.get("title"), str) or not feed["title"]:
        out.append("title is required and must be a non-empty string")
    _strings(feed, TOP_STRINGS, "feed", out)
    _urls(feed, TOP_URLS, "feed", out)
    if "expired" in feed and not isinstance(feed["expired"], bool):
        out.append("expired must be a boolean")
    _authors(feed, "feed", out)
    for n, hub in enumerate(feed.get("hubs", [])):
        if not isinstance(hub, dict) or not all(
            isinstance(hub.get(k), str) and hub.get(k) for k in ("type", "url")
        ):
            out.append(f"hubs[{n}] needs string type and url")
    _unknown(feed, TOP_KEYS, "feed", out)
    items = feed.get("items")
    if not isinstance(items, list):
        return [*out, "items is required and must be an array"]
    ids = []
    for n, item in enumerate(items):
        where = f"items[{n}]"
        if not isinstance(item, dict):
            out.append(f"{where} is not an object")
            continue
        if not isinstance(item.get("id"), str) or not item["id"]:
            out.append(f"{where}.id is required and must be a non-empty string")
        ids.append(item.get("id"))
        _strings(item, ITEM_STRINGS, where, out)
        _urls(item, ITEM_URLS, where, out)
        if "content_html" not in item and "content_text" not in item:
            out.append(f"{where} needs content_html or content_text")
        for key in ("date_published", "date_modified"):
            if key in item and not _RFC3339.match(str(item[key])):
                out.append(f"{where}.{key} is not RFC 3339: {item[key]!r}")
        tags = item.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            out.append(f"{where}.tags must be an array of strings")
        _authors(item, where, out)
        for a, attachment in enumerate(item.get("attachments", [])):
            if not isinstance(attachment, dict) or not all(
                isinstance(attachment.get(k), str) for k in ("url", "mime_type")
            ):
                out.append(f"{where}.attachments[{a}] needs url and mime_type strings")
        _unknown(item, ITEM_KEYS, where, out)
    if len(ids) != len(set(map(str, ids))):
        out.append("item ids are not unique")
    return out


def _strings(obj: dict[str, Any], keys: tuple[str, ...], where: str, out: list[str]) -> None:
    for key in keys:
        if key in obj and not isinstance(obj[key], str):
            out.append(f"{where}.{key} must be a string")


def _urls(obj: dict[str, Any], keys: tuple[str, ...], where: str, out: list[str]) -> None:
    for key in keys:
        if isinstance(obj.get(key), str) and not _URL.match(obj[key]):
            out.append(f"{where}.{key} is not an absolute http(s) URL: {obj[key]!r}")


def _authors(obj: dict[str, Any], where: str, out: list[str]) -> None:
    authors = obj.get("authors", [])
    if not isinstance(authors, list):
        out.append(f"{where}.authors must be an array")
        return
    for n, author in enumerate(authors):
        fields = ("name", "url", "avatar")
        if not isinstance(author, dict) or not any(
            isinstance(author.get(k), str) and author[k] for k in fields
        ):
            out.append(f"{where}.authors[{n}] needs a name, url or avatar")


def _unknown(obj: dict[str, Any], known: set[str], where: str, out: list[str]) -> None:
    for key in obj:
        if key not in known and not key.startswith("_"):
            out.append(f"{where} has an unknown key {key!r} (extensions start with '_')")
