"""The Jinja2 environment shared by pages, feeds and emails.

Digest text is data: autoescape is on for every template, and text reaches
templates only through values (never as template source). URLs in text become
links via `linkify`, which escapes everything else.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    import jinja2

    from newsletter.config import Config

# A URL runs until whitespace or a character that cannot end it in prose;
# trailing punctuation and an unbalanced ')' are given back to the sentence.
_URL = re.compile(r"https?://[^\s<>\"'`]+")
_TRAILING = ".,;:!?'\""


def builtin_templates() -> Path:
    """templates/ as installed (inside the package) or in a source checkout."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def split_url(candidate: str) -> tuple[str, str]:
    """Split a URL match into (url, trailing text that belongs to the sentence)."""
    url = candidate
    while url:
        if url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")")):
            url = url[:-1]
        else:
            break
    return url, candidate[len(url) :]


def urls(text: str) -> list[str]:
    """The URLs in a text, in order, as linkify would link them."""
    return [split_url(match.group())[0] for match in _URL.finditer(text)]


def linkify(text: str) -> Markup:
    """Escape text and turn http(s) URLs into links."""
    out: list[str] = []
    last = 0
    for match in _URL.finditer(text):
        url, rest = split_url(match.group())
        out.append(escape(text[last : match.start()]))
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        out.append(escape(rest))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def format_date(date: dt.date, language: str) -> str:
    """'2025년 4월 4일' for ko, 'April 4, 2025' for en."""
    from babel.dates import format_date as babel_format_date

    return babel_format_date(date, "long", locale="ko" if language == "ko" else "en")


@functools.cache
def _environment(search_path: tuple[Path, ...]) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(path) for path in search_path]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["linkify"] = linkify
    env.filters["date_long"] = format_date
    return env


def environment(config: Config | None = None) -> jinja2.Environment:
    """Jinja2 environment: the user's template folder first, then the built-in one."""
    search: list[Path] = []
    if config is not None and config.paths.templates is not None:
        search.append(config.paths.templates)
    search.append(builtin_templates())
    return _environment(tuple(search))


def issue_url(config: Config, date: dt.date, edition: str) -> str:
    """The archive page of one issue in one edition (public/E/YYYY-MM-DD/)."""
    return f"{config.site.base_url}{edition}/{date.isoformat()}/"


# --- names shared by pages, feeds and emails (appended for site/feeds) ---------

# Tag names may hold any letter, digits, '_', '-' and '.'; anything else (which
# the parser never lets through, but a library user might) becomes '-'.
_UNSAFE_IN_TAG = re.compile(r"[^\w.\-]+")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _short_hash(text: str, length: int = 8) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def paper_anchor(title: str) -> str:
    """A stable HTML id for a paper: an ASCII slug of its title plus a short hash.

    The hash is of the whole (NFC) title, so two titles that slug alike still
    get different ids, and the id never changes while the title does not.
    """
    import unicodedata

    title = unicodedata.normalize("NFC", title.strip())
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _NOT_SLUG.sub("-", ascii_title.lower()).strip("-")[:48].rstrip("-")
    return f"{slug or 'paper'}-{_short_hash(title)}"


def paper_anchors(titles: list[str] | tuple[str, ...]) -> list[str]:
    """paper_anchor for each title of one issue; a repeated title gets -2, -3..."""
    seen: dict[str, int] = {}
    anchors = []
    for title in titles:
        anchor = paper_anchor(title)
        seen[anchor] = seen.get(anchor, 0) + 1
        anchors.append(anchor if seen[anchor] == 1 else f"{anchor}-{seen[anchor]}")
    return anchors


def tag_slug(tag: str) -> str:
    """A safe folder name for a tag: Hangul kept, lower case, never hidden or '..'.

    Tags that differ only in case share a folder (and a page): case-insensitive
    file systems (macOS, Windows) could not hold both anyway.
    """
    import unicodedata

    name = _UNSAFE_IN_TAG.sub("-", unicodedata.normalize("NFC", tag).lower()) or "-"
    if name.startswith("."):
        name = "_" + name  # '.', '..' and '.net' would be special or hidden
    if len(name.encode("utf-8")) > 120:  # file names are limited to 255 bytes
        name = f"{name[:30]}-{_short_hash(name)}"
    return name


def tag_href(tag: str) -> str:
    """The URL path segment of a tag's folder (percent-encoded UTF-8)."""
    from urllib.parse import quote

    return quote(tag_slug(tag), safe="")


def tag_url(config: Config, tag: str, edition: str) -> str:
    """The archive page listing a tag's papers in one edition."""
    return f"{config.site.base_url}{edition}/tags/{tag_href(tag)}/"


def feed_url(config: Config, edition: str, kind: str = "atom", tag: str | None = None) -> str:
    """Where an edition's (or an edition's tag's) feed is published; kind: atom|rss."""
    folder = f"feeds/{edition}/" + (f"tags/{tag_href(tag)}/" if tag is not None else "")
    return f"{config.site.base_url}{folder}{kind}.xml"
