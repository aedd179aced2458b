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
