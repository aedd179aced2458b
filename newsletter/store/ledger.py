"""The delivery ledger: what happened to each message of an issue.

One row per (issue, edition, address) in `deliveries`: 'pending' before a
message is handed to a worker, 'sent' once the server accepted it, 'failed'
when it never will be. An issue is a day (`2025-04-04`, the daily email) or an
ISO week (`2025-W15`, the weekly email): the column `issue_date` holds either.
Who still needs an issue is `newsletter.store.plan`, read from these rows.
`issues` marks the issues whose email is done (the daemon's send-once mark).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from newsletter.model import (
    Edition,
    IssueId,
    Subscriber,
    SubscriberState,
    parse_issue_id,
)
from newsletter.store.bounces import smtp_bounce_rows
from newsletter.store.database import now

if TYPE_CHECKING:
    from newsletter.store.database import Database
    from newsletter.store.plan import Recipient
    from newsletter.store.schema import Tables

# Bound parameters per `IN (...)` list (SQLite allows 999 in old builds).
_IN_CHUNK = 500


class DeliveryState:
    """The state of a ledger row."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One ledger row. `attempts` counts every try over all runs; `last_reply` is
    the server's last answer (at most 500 characters); `sent_at` is UTC."""

    date: IssueId
    edition: Edition
    email: str
    state: str
    attempts: int
    last_reply: str
    sent_at: dt.datetime | None


@dataclass(frozen=True)
class Outcome:
    """What happened to one message; the deliverer hands batches to `record`."""

    edition: Edition
    email: str
    state: str  # DeliveryState
    reply: str = ""
    hard_bounce: bool = False


class Ledger:
    """The `deliveries` and `issues` tables of a `Database` (and the bounce count
    `record` keeps on `subscribers`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.tables = db.tables

    # --- writing ----------------------------------------------------------------

    def start_deliveries(
        self, date: IssueId, subscribers: Iterable[Subscriber | Recipient]
    ) -> None:
        """Ledger rows in state 'pending' for these subscribers (existing rows kept).

        Called once per page of the plan, so it costs per page, not per row: one
        INSERT ... SELECT from the subscribers table per edition and chunk of
        `_IN_CHUNK` addresses (a subscriber not in the table gets no row).
        """
        import sqlalchemy as sa

        s, d = self.tables.subscribers, self.tables.deliveries
        day = date.isoformat()
        stamp = now()
        by_edition: dict[str, list[str]] = {}
        for sub in subscribers:
            by_edition.setdefault(sub.edition.value, []).append(sub.email.lower())
        exists = (
            sa.select(sa.literal(1))
            .where(d.c.issue_date == day)
            .where(d.c.edition == s.c.edition)
            .where(d.c.email_key == s.c.email_key)
        )
        columns = ["issue_date", "edition", "email_key", "email", "state", "attempts"]
        columns += ["last_reply", "created_at", "updated_at"]
        with self.db.engine.begin() as conn:
            for edition, keys in by_edition.items():
                for start in range(0, len(keys), _IN_CHUNK):
                    rows = (
                        sa.select(
                            sa.literal(day, d.c.issue_date.type),
                            s.c.edition,
                            s.c.email_key,
                            s.c.email,
                            sa.literal(DeliveryState.PENDING, d.c.state.type),
                            sa.literal(0, d.c.attempts.type),
                            sa.literal("", d.c.last_reply.type),
                            sa.literal(stamp, d.c.created_at.type),
                            sa.literal(stamp, d.c.updated_at.type),
                        )
                        .where(s.c.edition == edition)
                        .where(s.c.email_key.in_(keys[start : start + _IN_CHUNK]))
                        .where(~sa.exists(exists))
                    )
                    conn.execute(d.insert().from_select(columns, rows))

    def record(
        self,
        date: IssueId,
        outcomes: Sequence[Outcome],
        bounce_limit: int,
        max_attempts: int | None = None,
    ) -> list[Outcome]:
        """Write a batch of outcomes in one transaction; return the given-up ones.

        Messages sent (nearly all of them) are one set-based UPDATE per edition
        and reply (`email_key IN (...)`, chunks of `_IN_CHUNK`): ~20x cheaper than
        an executemany row by row. Failures and retries go row by row.

        A temporary failure that makes `max_attempts` attempts in all (over every
        run) is recorded as failed instead: retries are bounded across reruns and
        daemon polls, not only within one run. Those outcomes are returned.

        A hard bounce adds one to the subscriber's count; at `bounce_limit` the
        subscriber is marked bounced; it is also an event in `bounce_events`.
        """
        if not outcomes:
            return []
        stamp = now()
        day = date.isoformat()
        sent: dict[tuple[str, str], list[str]] = {}
        others: list[Outcome] = []
        for o in outcomes:
            if o.state == DeliveryState.SENT and not o.hard_bounce:
                sent.setdefault((o.edition.value, o.reply[:500]), []).append(o.email.lower())
            else:
                others.append(o)
        given_up: list[Outcome] = []
        if max_attempts is not None:
            others, given_up = self._give_up(date, others, max_attempts)
            others += given_up
        rows = [
            {
                "b_date": day,
                "b_edition": o.edition.value,
                "b_key": o.email.lower(),
                "b_state": o.state,
                "b_reply": o.reply[:500],
                "b_sent_at": stamp if o.state == DeliveryState.SENT else None,
            }
            for o in others
        ]
        bounces = [{"b_key": o.email.lower()} for o in outcomes if o.hard_bounce]
        with self.db.engine.begin() as conn:
            for (edition, reply), keys in sent.items():
                for start in range(0, len(keys), _IN_CHUNK):
                    conn.execute(
                        _sent_update(self.tables),
                        {
                            "b_date": day,
                            "b_edition": edition,
                            "b_keys": keys[start : start + _IN_CHUNK],
                            "b_reply": reply,
                            "b_now": stamp,
                        },
                    )
            if rows:
                conn.execute(_row_update(self.tables, stamp), rows)
            if bounces:
                conn.execute(_bounce_update(self.tables, stamp, bounce_limit), bounces)
                # The event log (`newsletter bounces list`) has every bounce.
                conn.execute(
                    self.tables.bounce_events.insert(), smtp_bounce_rows(day, outcomes, stamp)
                )
        return given_up

    def _give_up(
        self, date: IssueId, outcomes: list[Outcome], max_attempts: int
    ) -> tuple[list[Outcome], list[Outcome]]:
        """Split outcomes into (as they are, temporary ones turned final at the cap)."""
        import sqlalchemy as sa

        temporary = [o for o in outcomes if o.state == DeliveryState.PENDING]
        if not temporary:
            return outcomes, []
        d = self.tables.deliveries
        attempts: dict[tuple[str, str], int] = {}
        keys = sorted({o.email.lower() for o in temporary})
        with self.db.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                query = sa.select(d.c.edition, d.c.email_key, d.c.attempts).where(
                    d.c.issue_date == date.isoformat(),
                    d.c.email_key.in_(keys[start : start + _IN_CHUNK]),
                )
                attempts.update({(e, k): n for e, k, n in conn.execute(query)})
        kept, given_up = [], []
        for o in outcomes:
            made = attempts.get((o.edition.value, o.email.lower()), 0) + 1
            if o.state == DeliveryState.PENDING and made >= max_attempts:
                reply = f"gave up after {made} attempts; last reply: {o.reply}"
                given_up.append(replace(o, state=DeliveryState.FAILED, reply=reply))
            else:
                kept.append(o)
        return kept, given_up

    # --- reading ----------------------------------------------------------------

    def deliveries_for(self, date: IssueId) -> list[Delivery]:
        """Every ledger row of `date`, by edition and address."""
        import sqlalchemy as sa

        d = self.tables.deliveries
        query = (
            sa.select(d)
            .where(d.c.issue_date == date.isoformat())
            .order_by(d.c.edition, d.c.email_key)
        )
        with self.db.engine.connect() as conn:
            return [
                Delivery(
                    date=parse_issue_id(row.issue_date),
                    edition=Edition(row.edition),
                    email=row.email,
                    state=row.state,
                    attempts=row.attempts,
                    last_reply=row.last_reply,
                    sent_at=row.sent_at,
                )
                for row in conn.execute(query)
            ]

    def delivery_counts(self, date: IssueId) -> dict[str, int]:
        """Ledger rows of `date` by state (states with none are left out)."""
        import sqlalchemy as sa

        d = self.tables.deliveries
        with self.db.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.state, sa.func.count())
                .where(d.c.issue_date == date.isoformat())
                .group_by(d.c.state)
            )
            return {state: n for state, n in rows}

    def recent_delivery_counts(self, limit: int = 7) -> dict[str, dict[str, int]]:
        """Deliveries by state for the most recent issue dates, newest first."""
        import sqlalchemy as sa

        d = self.tables.deliveries
        with self.db.engine.connect() as conn:
            dates = [
                row[0]
                for row in conn.execute(
                    sa.select(d.c.issue_date)
                    .distinct()
                    .order_by(d.c.issue_date.desc())
                    .limit(limit)
                )
            ]
            counts: dict[str, dict[str, int]] = {date: {} for date in dates}
            if dates:
                rows = conn.execute(
                    sa.select(d.c.issue_date, d.c.state, sa.func.count())
                    .where(d.c.issue_date.in_(dates))
                    .group_by(d.c.issue_date, d.c.state)
                )
                for date, state, n in rows:
                    counts[date][state] = n
        return counts

    # --- the daemon's send-once mark -------------------------------------------

    def issue_emailed(self, date: IssueId) -> bool:
        """Whether the email of this issue is done (the daemon's send-once mark)."""
        import sqlalchemy as sa

        issues = self.tables.issues
        query = sa.select(issues.c.issue_date).where(issues.c.issue_date == date.isoformat())
        with self.db.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def mark_issue_emailed(self, date: IssueId) -> None:
        """Set the send-once mark of this issue (idempotent)."""
        import sqlalchemy as sa

        issues = self.tables.issues
        with self.db.engine.begin() as conn:
            if (
                conn.execute(
                    sa.select(issues.c.issue_date).where(issues.c.issue_date == date.isoformat())
                ).first()
                is None
            ):
                conn.execute(issues.insert().values(issue_date=date.isoformat(), emailed_at=now()))


# --- statements -------------------------------------------------------------------


@functools.cache
def _sent_update(tables: Tables) -> Any:
    """record()'s UPDATE for sent messages, built once (building costs more than running)."""
    import sqlalchemy as sa

    d = tables.deliveries
    return (
        d.update()
        .where(d.c.issue_date == sa.bindparam("b_date"))
        .where(d.c.edition == sa.bindparam("b_edition"))
        .where(d.c.email_key.in_(sa.bindparam("b_keys", expanding=True)))
        .values(
            state=DeliveryState.SENT,
            attempts=d.c.attempts + 1,
            last_reply=sa.bindparam("b_reply"),
            updated_at=sa.bindparam("b_now", type_=d.c.updated_at.type),
            sent_at=sa.bindparam("b_now", type_=d.c.sent_at.type),
        )
    )


def _row_update(tables: Tables, stamp: dt.datetime) -> Any:
    """record()'s UPDATE for one failed or retried message (executemany)."""
    import sqlalchemy as sa

    d = tables.deliveries
    return (
        d.update()
        .where(d.c.issue_date == sa.bindparam("b_date"))
        .where(d.c.edition == sa.bindparam("b_edition"))
        .where(d.c.email_key == sa.bindparam("b_key"))
        .values(
            state=sa.bindparam("b_state"),
            attempts=d.c.attempts + 1,
            last_reply=sa.bindparam("b_reply"),
            updated_at=stamp,
            sent_at=sa.bindparam("b_sent_at"),
        )
    )


def _bounce_update(tables: Tables, stamp: dt.datetime, bounce_limit: int) -> Any:
    """record()'s UPDATE of a hard-bounced subscriber: one more bounce, bounced at the limit."""
    import sqlalchemy as sa

    s = tables.subscribers
    bounced = sa.and_(
        s.c.hard_bounces + 1 >= bounce_limit, s.c.state != SubscriberState.BOUNCED.value
    )
    return (
        s.update()
        .where(s.c.email_key == sa.bindparam("b_key"))
        .values(
            hard_bounces=s.c.hard_bounces + 1,
            state=sa.case((bounced, SubscriberState.BOUNCED.value), else_=s.c.state),
            state_changed_at=sa.case((bounced, stamp), else_=s.c.state_changed_at),
            updated_at=stamp,
        )
    )
