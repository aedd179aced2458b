"""The tags readers can choose as topics: those of the 90 days up to the newest issue.

    TagCatalog(config).recent() -> [TagUse(key, name, count), ...]

The 90 days are counted back from the newest issue in the archive, not from
today: an archive that has been quiet for months still offers its tags (and
one with no tagged paper offers none: the pages then leave the choice out).

Most used first (papers carrying the tag, tags equal up to case merged), then
by name. The digests folder is read as the site is (`digest.find_digest_files`);
each file is parsed once per version (its size and mtime), so the sign-up form
costs a `stat` per file. A tag that falls out of use stays valid: a reader who
chose it keeps it (the preferences page still shows it, checked), and it
matches again the day a paper carries it.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.model import Digest, topic_key

if TYPE_CHECKING:
    from newsletter.config import Config

RECENT_DAYS = 90


@dataclass(frozen=True)
class TagUse:
    """A topic on offer: its key (`model.topic_key`), the spelling of its newest
    use, and how many papers of the period carry it."""

    key: str
    name: str
    count: int


def count_tags(digests: list[Digest], first: dt.date, last: dt.date) -> list[TagUse]:
    """Tags of the papers dated first..last, most used first, then by key."""
    counts: dict[str, int] = {}
    names: dict[str, str] = {}
    for digest in sorted(digests, key=lambda d: d.date, reverse=True):
        if not first <= digest.date <= last:
            continue
        for entry in digest.entries:
            for key in {topic_key(tag): tag for tag in entry.tags}.items():
                counts[key[0]] = counts.get(key[0], 0) + 1
                names.setdefault(key[0], key[1])  # the newest spelling
    return [
        TagUse(key, names[key], n) for key, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))
    ]


class TagCatalog:
    """The tags of paths.digests, kept per file version (thread-safe)."""

    def __init__(self, config: Config) -> None:
        self.folder = config.paths.digests
        self._parsed: dict[Path, tuple[tuple[int, int], Digest | None]] = {}
        self._lock = threading.Lock()

    def digests(self) -> list[Digest]:
        """Every good digest of the folder (files that fail to parse are left out)."""
        from newsletter.digest import check_paths, find_digest_files

        if not self.folder.is_dir():
            return []
        with self._lock:
            seen: dict[Path, tuple[tuple[int, int], Digest | None]] = {}
            fresh = []
            for path in find_digest_files([self.folder]).files:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                signature = (stat.st_mtime_ns, stat.st_size)
                known = self._parsed.get(path)
                if known is not None and known[0] == signature:
                    seen[path] = known
                else:
                    fresh.append((path, signature))
            signatures = {str(path): signature for path, signature in fresh}
            for report in check_paths(list(signatures)) if fresh else []:
                if report.file in signatures:
                    digest = report.digest if report.ok else None
                    seen[Path(report.file)] = (signatures[report.file], digest)
            self._parsed = seen
            return [digest for _, digest in seen.values() if digest is not None]

    def recent(self, days: int = RECENT_DAYS) -> list[TagUse]:
        """The tags of the `days` days up to the newest issue, most used first
        ([] for an empty archive)."""
        return recent_tags(self.digests(), days)


def recent_tags(digests: list[Digest], days: int = RECENT_DAYS) -> list[TagUse]:
    """The tags of the `days` days (counted in issue dates) up to the newest of
    `digests`, most used first; [] without digests."""
    if not digests:
        return []
    newest = max(digest.date for digest in digests)
    return count_tags(digests, newest - dt.timedelta(days=days - 1), newest)
