"""When each feed item last changed, so that corrections reach feed readers.

An item (an issue in an edition, or one paper of it in a tag feed) has a key,
`E/YYYY-MM-DD` or `E/YYYY-MM-DD#anchor`, and a hash of what the author wrote as
that edition shows it (title, authors, abstract, comments, tags). The build
manifest keeps, per key, the hash and the time it last changed. When a rebuild
finds another hash, the item's time moves to the build's clock (and never
backwards), so its Atom `updated`, the feed's `updated` and RSS
`lastBuildDate` move with it; an unchanged item keeps its time, and its feeds
stay byte-identical. An item seen for the first time gets the time derived
from its date, so two fresh builds of the same digests are identical too.

Template and config changes do not count as corrections: only the text does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

ONE_SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Revision:
    """A content hash (16 hex digits) and when that content was first built."""

    hash: str
    changed: dt.datetime


def content_hash(value: object) -> str:
    """A short stable hash of a value's repr (frozen dataclasses, tuples, str)."""
    return hashlib.sha256(repr(value).encode("utf-8")).hexdigest()[:16]


def issue_key(edition: str, date: dt.date) -> str:
    """The key of an issue's feed item in one edition: 'E/YYYY-MM-DD'; a paper's
    key adds '#anchor'."""
    return f"{edition}/{date.isoformat()}"


@dataclass
class Revisions:
    """The times of this build's items, given the last build's (from the manifest).

    `now` is the build's clock (aware); it is only read when content changed,
    so tests pass a fixed one and nothing depends on the wall clock.
    """

    known: Mapping[str, Revision] = field(default_factory=dict)
    now: dt.datetime | None = None
    seen: dict[str, Revision] = field(default_factory=dict)

    def changed(self, key: str, value: object, first: dt.datetime) -> dt.datetime:
        """When the item `key` with this content last changed.

        first: its time when it was never built before (derived from its date).
        An item that is new in an issue that was built before (a paper added,
        or renamed, by a correction) counts as changed now.
        """
        if key in self.seen:
            return self.seen[key].changed
        digest = content_hash(value)
        old = self.known.get(key)
        if old is not None and old.hash == digest:
            when = old.changed
        elif old is not None:
            when = max(self._now(), old.changed + ONE_SECOND)
        elif "#" in key and key.partition("#")[0] in self.known:
            when = max(self._now(), first)
        else:
            when = first
        self.seen[key] = Revision(digest, when)
        return when

    def time(self, key: str) -> dt.datetime | None:
        """When item `key` last changed, if this build or the last one knows."""
        revision = self.seen.get(key) or self.known.get(key)
        return revision.changed if revision is not None else None

    def _now(self) -> dt.datetime:
        now = self.now or dt.datetime.now(dt.UTC)
        return now.replace(microsecond=0)

    def record(self, keep: set[str] | None = None) -> dict[str, Revision]:
        """What the next build needs: this build's items, plus the earlier ones
        whose issue (the key's `E/DATE` part) is in `keep`."""
        kept = {
            key: revision
            for key, revision in self.known.items()
            if keep is not None and key.partition("#")[0] in keep
        }
        return kept | self.seen


def distinct_times(times: list[dt.datetime]) -> list[dt.datetime]:
    """The times in order, each one made unique by moving it back a second at a
    time (feeds list newest first; Atom readers and validators want one
    `updated` per entry)."""
    used: set[dt.datetime] = set()
    out = []
    for when in times:
        while when in used:
            when -= ONE_SECOND
        used.add(when)
        out.append(when)
    return out
