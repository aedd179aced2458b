"""The bounce event log: what happened to deliveries after (or at) the send.

One row per event in `bounce_events`: a hard or soft bounce, a spam complaint,
a mailto unsubscribe, or an operator's reactivation, with its time, recipient,
issue and edition (when known), status code, diagnostic text and source
(smtp, imap, maildir, mbox, ses, mailgun, webhook, cli).

`record` writes an event and the change it makes to its subscriber in ONE
transaction, and only once: an event's `ref` (its identity at the source, such
as "this delivery hard-bounced") is unique, so a report read twice, a webhook
retried or replayed, or a mailbox processed again after a crash changes
nothing the second time. What an event does to a subscriber is the caller's
rule (`newsletter.bounces.policy`); this module only keeps the books.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from newsletter.model import Edition, IssueId, SubscriberState, parse_issue_id
from newsletter.store.database import now

if TYPE_CHECKING:
    from newsletter.store.database import Database
    from newsletter.store.ledger import Outcome


class EventKind(StrEnum):
    """What an event reports."""

    HARD = "hard_bounce"  # permanent failure (RFC 3463 class 5)
    SOFT = "soft_bounce"  # temporary failure or delay (class 4): shown, never acted on
    COMPLAINT = "complaint"  # RFC 5965 feedback report (abuse, fraud, ...)
    UNSUBSCRIBE = "unsubscribe"  # a mailto: unsubscribe request or a provider's
    REACTIVATED = "reactivated"  # an operator undid the above


# Where an event came from.
SOURCES = ("smtp", "imap", "maildir", "mbox", "ses", "mailgun", "webhook", "cli")

_DIAGNOSTIC_MAX = 1000
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True)
class BounceEvent:
    """One event. `ref` identifies it at its source (hashed into the unique
    column); `at` is UTC and set when recorded; `id` once stored."""

    kind: EventKind
    email: str
    source: str
    ref: str
    issue_date: IssueId | None = None
    edition: Edition | None = None
    status: str = ""
    diagnostic: str = ""
    at: dt.datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class Recorded:
    """What `record` did: `duplicate` if the event was already there (nothing
    changed); the subscriber's state before and after (None: no such subscriber)."""

    event: BounceEvent
    duplicate: bool
    before: SubscriberState | None
    after: SubscriberState | None
    hard_bounces: int


# rule(event, current state, hard bounces so far) -> (new state, new hard-bounce count)
Rule = Callable[[BounceEvent, SubscriberState, int], tuple[SubscriberState, int]]


def ref_hash(ref: str) -> str:
    """The stored form of a ref: 64 hex characters (SHA-256), whatever its length."""
    return hashlib.sha256(ref.encode("utf-8")).hexdigest()


def status_of(reply: str) -> str:
    """The RFC 3463 enhanced status code in an SMTP reply or DSN text ('' if none)."""
    match = _STATUS.search(reply)
    return match.group(1) if match else ""


class BounceEvents:
    """The `bounce_events` table of a `Database` (and the subscriber changes events make)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = db.tables.bounce_events

    def record(self, event: BounceEvent, rule: Rule) -> Recorded:
        """Store `event` and apply `rule` to its subscriber, in one transaction.

        Idempotent by `event.ref`: a second record of the same ref is a
        duplicate and changes nothing (also when two processes race: the
        unique index decides). An event for an address that is not a
        subscriber is stored all the same (after=None).
        """
        import sqlalchemy as sa

        t, s = self.table, self.db.tables.subscribers
        key = event.email.lower()
        stamp = now()
        stored = replace(event, at=stamp)
        try:
            with self.db.engine.begin() as conn:
                seen = conn.execute(sa.select(t.c.id).where(t.c.ref == ref_hash(event.ref))).first()
                if seen is not None:
                    return Recorded(stored, True, None, None, 0)
                result = conn.execute(t.insert().values(**_row(event, stamp)))
                stored = replace(stored, id=result.inserted_primary_key[0])
                row = conn.execute(
                    sa.select(s.c.id, s.c.state, s.c.hard_bounces).where(s.c.email_key == key)
                ).first()
                if row is None:
                    return Recorded(stored, False, None, None, 0)
                before = SubscriberState(row.state)
                after, bounces = rule(event, before, int(row.hard_bounces or 0))
                if (after, bounces) != (before, row.hard_bounces):
                    # A new state also moves state_changed_at (a confirmation
                    # link issued before it is stale; the export keeps it).
                    moved = {"state_changed_at": stamp} if after is not before else {}
                    conn.execute(
                        s.update()
                        .where(s.c.id == row.id)
                        .values(state=after.value, hard_bounces=bounces, updated_at=stamp, **moved)
                    )
                return Recorded(stored, False, before, after, bounces)
        except sa.exc.IntegrityError:
            # Another process stored the same ref between our check and insert.
            return Recorded(stored, True, None, None, 0)

    # -- lookups for reports (newsletter.bounces.classify.Directory) --

    def email_of(self, subscriber_id: int) -> str | None:
        """The address of the subscriber with this id (a VERP token's id); None if none."""
        import sqlalchemy as sa

        s = self.db.tables.subscribers
        with self.db.engine.connect() as conn:
            return conn.execute(sa.select(s.c.email).where(s.c.id == subscriber_id)).scalar()

    def deliveries_of(self, email: str) -> list[tuple[IssueId, Edition]]:
        """(issue date, edition) of every ledger row of this address, newest first."""
        import sqlalchemy as sa

        d = self.db.tables.deliveries
        query = (
            sa.select(d.c.issue_date, d.c.edition)
            .where(d.c.email_key == email.lower())
            .order_by(d.c.issue_date.desc())
        )
        with self.db.engine.connect() as conn:
            return [(parse_issue_id(day), Edition(ed)) for day, ed in conn.execute(query)]

    # -- reading --

    def list(self, since: dt.datetime | None = None) -> list[BounceEvent]:
        """Events in the order they were recorded, optionally from `since` (aware) on."""
        import sqlalchemy as sa

        t = self.table
        query = sa.select(t).order_by(t.c.id)
        if since is not None:
            query = query.where(t.c.at >= since.astimezone(dt.UTC))
        with self.db.engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def counts_by_issue(self, dates: Iterable[str]) -> dict[str, dict[str, int]]:
        """{issue date: {kind: recipients}} for these dates (ISO); kinds with none left out.

        Recipients, not reports: an address that bounced twice for one issue counts once.
        """
        import sqlalchemy as sa

        t = self.table
        dates = list(dates)
        counts: dict[str, dict[str, int]] = {date: {} for date in dates}
        if not dates:
            return counts
        query = (
            sa.select(t.c.issue_date, t.c.kind, sa.func.count(sa.distinct(t.c.email_key)))
            .where(t.c.issue_date.in_(dates))
            .group_by(t.c.issue_date, t.c.kind)
        )
        with self.db.engine.connect() as conn:
            for date, kind, n in conn.execute(query):
                counts[date][kind] = int(n)
        return counts


def smtp_bounce_rows(day: str, outcomes: Iterable[Outcome], stamp: dt.datetime) -> list[dict]:
    """`bounce_events` rows for recipients refused during the SMTP session (the ledger
    writes them in its own transaction, beside the bounce count)."""
    return [
        _row(
            BounceEvent(
                kind=EventKind.HARD,
                email=o.email,
                source="smtp",
                ref=f"smtp|{day}|{o.edition.value}|{o.email.lower()}",
                issue_date=parse_issue_id(day),
                edition=o.edition,
                status=status_of(o.reply) or o.reply[:3],
                diagnostic=o.reply,
            ),
            stamp,
        )
        for o in outcomes
        if o.hard_bounce
    ]


def _row(event: BounceEvent, stamp: dt.datetime) -> dict[str, Any]:
    return {
        "at": stamp,
        "kind": event.kind.value,
        "email": event.email[:320],
        "email_key": event.email.lower()[:320],
        "issue_date": event.issue_date.isoformat() if event.issue_date else None,
        "edition": event.edition.value if event.edition else None,
        "status": event.status[:32],
        "diagnostic": " ".join(event.diagnostic.split())[:_DIAGNOSTIC_MAX],
        "source": event.source,
        "ref": ref_hash(event.ref),
    }


def _event(row: Any) -> BounceEvent:
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)  # SQLite drops the zone
    return BounceEvent(
        kind=EventKind(row.kind),
        email=row.email,
        source=row.source,
        ref=row.ref,
        issue_date=parse_issue_id(row.issue_date) if row.issue_date else None,
        edition=Edition(row.edition) if row.edition else None,
        status=row.status,
        diagnostic=row.diagnostic,
        at=at,
        id=row.id,
    )
