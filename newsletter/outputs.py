"""Planned output files: a path, a key of everything its bytes depend on, and
how to render it. The site writer skips rendering a file whose key matches the
last build's (newsletter.site.build), so a rebuild with nothing changed renders
nothing, and publishing one day renders only what lists that day.

A key is a short hash (`key_of`) of plain values: the template and code
fingerprint (`environment_key`), the config values the page shows, and the
content hashes of the digests it lists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.model import Digest


@dataclass(frozen=True)
class Output:
    """One file of the site: `path` relative to paths.public.

    pure: rendering it changes nothing the build reads later (no revision
    bookkeeping), so a worker process may render it (pages; not feeds).
    day: the (newest) date of the issues it shows, if it shows a few: worker
    processes take pages of neighbouring days together, so that what those
    pages share (a paper's comment as HTML, its entry in tag lists) is made
    in one process, once.
    """

    path: str
    key: str
    render: Callable[[], bytes]
    pure: bool = False
    day: dt.date | None = None


def key_of(*parts: object) -> str:
    """A 16-hex-digit hash of the parts' reprs (str, int, tuples, dates)."""
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


def _tree_fingerprint(folders: tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(folder).as_posix().encode())
                digest.update(b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def environment_key(config: Config) -> str:
    """What every page depends on besides its content: the templates (the
    user's and the built-in ones), this program's code, and the config
    sections that pages and feeds show. Changing any of them renders all."""
    from newsletter import templating

    code = Path(__file__).parent
    folders = [code, templating.builtin_templates()]
    if config.paths.templates is not None:
        folders.append(config.paths.templates)
    # Read every time (about 1 ms): a daemon sees templates edited while it runs.
    return key_of(
        _tree_fingerprint(tuple(folders)),
        config.site.model_dump_json(),
        config.feeds.model_dump_json(),
        tuple(str(edition) for edition in config.editions),
        config.server.public_url,
    )


def digest_key(digest: Digest, *, links: bool = True) -> str:
    """A digest's content hash: its date and every entry's fields (not its file
    name or line numbers, which pages never show), and its papers' links
    unless `links` is False (the search index does not show them). Fields are
    joined with ASCII separator characters, which the digest parser never
    lets through; a digest without links hashes as it did before links."""
    parts = [digest.date.isoformat()]
    for e in digest.entries:
        parts += (e.title, "\x1e".join(e.authors), e.abstract, e.comment_ko, e.comment_en)
        parts.append("\x1e".join(e.tags))
    if links and digest.links:
        parts += (
            "\x1e".join((link.url, link.arxiv_id or "", link.category or "")) if link else ""
            for link in digest.links
        )
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


class DigestKeys:
    """digest_key of each digest, computed once per build (by date: a build has
    one digest per date); `text(digest)` leaves the links out."""

    def __init__(self) -> None:
        self._keys: dict[object, str] = {}
        self._texts: dict[object, str] = {}

    def __call__(self, digest: Digest) -> str:
        key = self._keys.get(digest.date)
        if key is None:
            key = self._keys[digest.date] = digest_key(digest)
        return key

    def text(self, digest: Digest) -> str:
        """digest_key without the links: what the search index depends on."""
        key = self._texts.get(digest.date)
        if key is None:
            key = self._texts[digest.date] = digest_key(digest, links=False)
        return key
