"""The delivery plan: who still needs an issue.

The plan of an issue is the active subscribers of its editions and cadence
(daily or weekly, on the day that decides: `newsletter.cadence`) with no
'sent' or 'failed' row for it in the ledger (in any edition), so a rerun sends
only what is left. Read in pages by id, so memory stays flat for any list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from newsletter.cadence import plan_condition
from newsletter.model import Cadence, Edition, IssueId, Subscriber, SubscriberState, Week
from newsletter.store.ledger import DeliveryState
from newsletter.store.subscribers import subscriber_from_row

if TYPE_CHECKING:
    from newsletter.store.database import Database
    from newsletter.store.schema import Tables

T = TypeVar("T")


class Recipient(NamedTuple):
    """What a send needs of a planned subscriber: their row `id`, address,
    display name, edition and topic keys (sorted; () = every paper).

    A plain tuple read straight from five columns: building a whole
    `Subscriber` (enums, times, cadence) cost ~40 us a row, more than the
    rest of the main process's work per message.
    """

    id: int
    email: str
    name: str
    edition: Edition
    topics: tuple[str, ...]


_EDITIONS = {e.value: e for e in Edition}


class Plan:
    """The plan of an issue, read from the `subscribers` and `deliveries` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tables = db.tables

    def groups(
        self,
        date: IssueId,
        editions: Sequence[Edition],
        *,
        cadence: Cadence = Cadence.DAILY,
        day: dt.date | None = None,
    ) -> tuple[dict[tuple[Edition, tuple[str, ...]], int], int]:
        """The plan counted by (edition, topics): one query, a row per group,
        however long the list; and how many were skipped (see todo)."""
        import sqlalchemy as sa

        s = self.tables.subscribers
        who = _Who(date, editions, cadence, day)
        query = _plan_query(self.tables, who, [s.c.edition, s.c.topics, sa.func.count()])
        with self.db.engine.connect() as conn:
            rows = conn.execute(query.group_by(s.c.edition, s.c.topics))
            groups = {
                (Edition(edition), tuple(topics.split(",")) if topics else ()): int(n)
                for edition, topics, n in rows
            }
        return groups, self._skipped(who)

    def recipients(
        self,
        date: IssueId,
        editions: Sequence[Edition],
        *,
        page: int = 2000,
        cadence: Cadence = Cadence.DAILY,
        day: dt.date | None = None,
    ) -> Iterator[list[Recipient]]:
        """The delivery plan in pages of `page` subscribers, by id (keyset
        pagination), as `Recipient` tuples: what sending needs.

        Memory stays flat however long the list: one short read per page, no
        read transaction held open while sending (SQLite's WAL can checkpoint).
        Someone who unsubscribes meanwhile is left out of the pages not yet read.
        """
        s = self.tables.subscribers
        who = _Who(date, editions, cadence, day)
        columns = [s.c.id, s.c.email, s.c.name, s.c.edition, s.c.topics]
        topic_sets: dict[str, tuple[str, ...]] = {"": ()}

        def recipient(row: Any) -> Recipient:
            ident, email, name, edition, topics = row
            topics = topics or ""
            keys = topic_sets.get(topics)
            if keys is None:
                keys = topic_sets[topics] = tuple(topics.split(","))
            return Recipient(ident, email, name, _EDITIONS[edition], keys)

        yield from self._keyset(who, columns, recipient, page)

    def _keyset(
        self, who: _Who, columns: list[Any], convert: Callable[[Any], T], page: int
    ) -> Iterator[list[T]]:
        """Pages of the plan by subscriber id; `convert` makes each row's value."""
        s = self.tables.subscribers
        last = 0
        while True:
            query = (
                _plan_query(self.tables, who, columns)
                .where(s.c.id > last)
                .order_by(s.c.id)
                .limit(page)
            )
            with self.db.engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield [convert(row) for row in rows]
            last = rows[-1].id or last
            if len(rows) < page:
                return

    def todo(
        self,
        date: IssueId,
        editions: Sequence[Edition],
        *,
        cadence: Cadence = Cadence.DAILY,
        day: dt.date | None = None,
    ) -> tuple[list[Subscriber], int]:
        """Active subscribers of these editions still to mail for the issue, and how
        many were skipped (already sent, or failed permanently, in any edition).

        `cadence`: who gets this issue, daily (a date) or weekly (a Week); `day`
        is the day whose cadence decides (default: the issue's date; a week's
        first day for a weekly issue), see `newsletter.cadence`.
        """
        who = _Who(date, editions, cadence, day)
        pages = self._keyset(who, [self.tables.subscribers], subscriber_from_row, 2000)
        todo = [subscriber for page in pages for subscriber in page]
        return todo, self._skipped(who)

    def _skipped(self, who: _Who) -> int:
        """Active subscribers of the issue's audience already sent or failed."""
        import sqlalchemy as sa

        s, d = self.tables.subscribers, self.tables.deliveries
        done = (
            sa.select(d.c.email_key)
            .where(d.c.issue_date == who.issue.isoformat())
            .where(d.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED]))
        )
        query = sa.select(sa.func.count()).select_from(
            sa.select(s.c.id)
            .where(s.c.state == SubscriberState.ACTIVE.value)
            .where(s.c.edition.in_([e.value for e in who.editions]))
            .where(plan_condition(s, who.cadence, who.decides))
            .where(s.c.email_key.in_(done))
            .subquery()
        )
        with self.db.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)


@dataclass(frozen=True)
class _Who:
    """The audience of an issue: its editions, and the cadence it is for on the
    day that decides (`newsletter.cadence`)."""

    issue: IssueId
    editions: Sequence[Edition]
    cadence: Cadence
    day: dt.date | None

    @property
    def decides(self) -> dt.date:
        if self.day is not None:
            return self.day
        return self.issue.monday if isinstance(self.issue, Week) else self.issue


def _plan_query(tables: Tables, who: _Who, columns: Any) -> Any:
    """SELECT columns FROM active subscribers of the audience not yet done.

    "Done" is sent or failed in any edition; NOT EXISTS on the ledger's
    primary key is an index lookup per subscriber (a NOT IN subquery would be
    rebuilt for every page).
    """
    import sqlalchemy as sa

    s, d = tables.subscribers, tables.deliveries
    done = (
        sa.select(sa.literal(1))
        .where(d.c.issue_date == who.issue.isoformat())
        .where(d.c.edition.in_([e.value for e in Edition]))
        .where(d.c.email_key == s.c.email_key)
        .where(d.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED]))
    )
    return (
        sa.select(*columns)
        .where(s.c.state == SubscriberState.ACTIVE.value)
        .where(s.c.edition.in_([e.value for e in who.editions]))
        .where(plan_condition(s, who.cadence, who.decides))
        .where(~sa.exists(done))
    )
