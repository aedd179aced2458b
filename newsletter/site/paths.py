"""Where each page of the site lives, and its public URL.

Every page is a folder's index.html, so its URL is the folder's (`ko/2025-04-04/`).
Paths are relative to paths.public, URLs start with site.base_url.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from newsletter import render

if TYPE_CHECKING:
    from newsletter.config import Config


def issue_path(edition: str, date: dt.date) -> str:
    """`E/YYYY-MM-DD/index.html`: one issue in one edition."""
    return f"{edition}/{date.isoformat()}/index.html"


def edition_index_path(edition: str, page: int | None = None) -> str:
    """The edition's front page (page=None: the newest issues) or one of its
    numbered pages (`E/page/K/`, numbered from the oldest, see indexes)."""
    return f"{edition}/index.html" if page is None else f"{edition}/page/{page}/index.html"


def tag_page_path(edition: str, tag: str, page: int | None = None) -> str:
    """A tag's front page (its newest papers) or numbered page, in one edition."""
    folder = f"{edition}/tags/{render.tag_slug(tag)}/"
    return f"{folder}index.html" if page is None else f"{folder}page/{page}/index.html"


def tag_index_path(edition: str) -> str:
    """`E/tags/index.html`: every tag of the edition with its count."""
    return f"{edition}/tags/index.html"


def search_page_path(edition: str) -> str:
    """`E/search/index.html`: the edition's search page."""
    return f"{edition}/search/index.html"


def page_url(config: Config, path: str) -> str:
    """The public URL of a page path: base_url + its folder (percent-encoded)."""
    from urllib.parse import quote

    folder = path.removesuffix("index.html")
    return config.site.base_url + quote(folder)


def depth_root(path: str) -> str:
    """The relative link from a page's folder back to the site's root ('../../')."""
    return "../" * path.count("/")
