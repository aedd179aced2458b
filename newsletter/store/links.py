"""The link cache: each paper is looked up on arXiv once (SQLAlchemy Core).

One row per paper of the `paper_links` table (store/schema.py), keyed by
`papers.matching.paper_key(title, authors)`: the same paper in two issues is
one row; a corrected title or author list is a new paper. found and
not_found rows are final until `links refresh`; a failed row holds the error
and when to try again, and counts the attempts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.papers.links import LinkStatus, Lookup, PaperLink

if TYPE_CHECKING:
    from newsletter.store.database import Database

_IN_CHUNK = 500  # bound parameters per IN (...) list


@dataclass(frozen=True)
class CachedLink:
    """A cache row: the lookup, how many failed attempts in a row, when checked."""

    key: str
    title: str
    lookup: Lookup
    attempts: int
    checked_at: dt.datetime


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite gives back naive datetimes; everything stored here is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


class LinkCache:
    """Lookups by paper key, in the `paper_links` table of `db`."""

    def __init__(self, db: Database) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = db.engine
        self.table = db.tables.paper_links

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedLink]:
        """The cached rows among `keys`."""
        t, keys = self.table, list(dict.fromkeys(keys))
        found: dict[str, CachedLink] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = keys[start : start + _IN_CHUNK]
                for row in conn.execute(t.select().where(t.c.paper_key.in_(chunk))):
                    found[row.paper_key] = _cached(row)
        return found

    def get(self, key: str) -> CachedLink | None:
        return self.get_many([key]).get(key)

    def put(self, key: str, title: str, lookup: Lookup, now: dt.datetime) -> CachedLink:
        """Store `lookup` for the paper; a failure counts one more attempt.

        An override's or a disabled lookup's result is not a lookup: ValueError.
        """
        if lookup.source not in ("arxiv", "cache"):
            raise ValueError(f"only arXiv lookups are cached, not {lookup.source!r} ones")
        sa, t = self._sa, self.table
        link = lookup.link
        values: dict[str, Any] = {
            "title": title,
            "status": lookup.status.value,
            "url": link.url if link else None,
            "arxiv_id": link.arxiv_id if link else None,
            "category": link.category if link else None,
            "reason": lookup.reason,
            "checked_at": now,
            "retry_after": lookup.retry_after,
        }
        with self.engine.begin() as conn:
            before = conn.execute(
                sa.select(t.c.attempts, t.c.status).where(t.c.paper_key == key).with_for_update()
            ).first()
            failed_before = before is not None and before.status == LinkStatus.FAILED
            attempts = (before.attempts if failed_before else 0) + 1
            values["attempts"] = attempts if lookup.status is LinkStatus.FAILED else 0
            if before is not None:
                conn.execute(t.update().where(t.c.paper_key == key).values(**values))
            else:
                conn.execute(self._insert_or_update(key, values))
        return CachedLink(key, title, lookup, values["attempts"], now)

    def _insert_or_update(self, key: str, values: dict[str, Any]) -> Any:
        """INSERT, or UPDATE when another process stored the paper meanwhile."""
        name = self.engine.dialect.name
        if name not in ("sqlite", "postgresql"):
            return self.table.insert().values(paper_key=key, **values)
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        return (
            insert(self.table)
            .values(paper_key=key, **values)
            .on_conflict_do_update(index_elements=["paper_key"], set_=values)
        )

    def next_retry(self) -> dt.datetime | None:
        """The earliest retry time among failed rows (UTC), or None: when to look again."""
        sa, t = self._sa, self.table
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.min(t.c.retry_after)).where(t.c.status == LinkStatus.FAILED)
            ).scalar()
        return _aware(value)

    def counts(self) -> dict[LinkStatus, int]:
        """Rows by status, for `status` reports."""
        sa, t = self._sa, self.table
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.status, sa.func.count()).group_by(t.c.status))
            found = {LinkStatus(status): count for status, count in rows}
        return {status: found.get(status, 0) for status in LinkStatus}


def _cached(row: Any) -> CachedLink:
    status = LinkStatus(row.status)
    link = None
    if status is LinkStatus.FOUND:
        link = PaperLink(url=row.url, arxiv_id=row.arxiv_id, category=row.category)
    lookup = Lookup(status, link, row.reason, _aware(row.retry_after), source="cache")
    return CachedLink(row.paper_key, row.title, lookup, row.attempts, _aware(row.checked_at))
