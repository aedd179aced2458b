"""The subscriber list: add, look up, change state or edition, count.

Re-adding an address that unsubscribed, bounced or complained (`LEFT_STATES`)
does NOT reactivate it unless the caller passes `reactivate=True` (the owner
asked again): an import of an old list must never re-subscribe people who left.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from newsletter import cadence as cadences
from newsletter.errors import NewsletterError
from newsletter.model import (
    LEFT_STATES,
    Cadence,
    Edition,
    Subscriber,
    SubscriberState,
    topics_text,
)
from newsletter.store.database import now

if TYPE_CHECKING:
    import sqlalchemy as sa

    from newsletter.cadence import WeeklySchedule
    from newsletter.store.database import Database

# What add_in did to the row.
Change = Literal["added", "updated", "unchanged"]


@dataclass(frozen=True)
class History:
    """What a row keeps besides address, edition, name and state: an import of an
    export gives it back. Times are aware (any zone); None means "now"."""

    hard_bounces: int = 0
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    state_changed_at: dt.datetime | None = None
    # A cadence change still waiting for its period (newsletter.cadence).
    previous_cadence: Cadence | None = None
    cadence_from: dt.date | None = None


@dataclass(frozen=True)
class Preferences:
    """What a subscriber chose besides the edition: None leaves it as it is
    (a new subscriber: daily, every topic). `schedule` says when weekly
    periods start, for the rule of a cadence change (newsletter.cadence)."""

    cadence: Cadence | None = None
    topics: tuple[str, ...] | None = None
    schedule: WeeklySchedule | None = None


def stamp(at: dt.datetime | None = None) -> dt.datetime:
    """`at` (default: now) as the tables record times: UTC, whole seconds.

    ValueError for a naive datetime.
    """
    if at is None:
        return now()
    if at.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return at.astimezone(dt.UTC).replace(microsecond=0)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """A time read back from the database as aware UTC (SQLite returns naive UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
LOCAL_PART_MAX_OCTETS = 64


def normalize_email(address: str) -> str:
    """The canonical form of an address; NewsletterError if it is not one.

    Besides email-validator's syntax rules: a local part over 64 octets (RFC
    5321 §4.5.3.1.1), and one holding an RFC 2047 encoded-word (`=?utf-8?q?…?=`),
    which may not appear in an address (RFC 2047 §5) and which header parsers
    would decode into display text, or a line break, are refused. Such an
    address is never decoded.
    """
    from email_validator import EmailNotValidError, validate_email

    if has_encoded_word(address.strip().rpartition("@")[0]):
        raise NewsletterError(
            f"{address!r} is not a valid email address: its local part holds an RFC 2047 "
            "encoded-word (=?charset?encoding?text?=), which an address may not contain"
        )
    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{address!r} is not a valid email address: {exc}") from None
    if len(result.local_part.encode("utf-8")) > LOCAL_PART_MAX_OCTETS:
        raise NewsletterError(
            f"{address!r} is not a valid email address: the part before the @ is longer "
            f"than {LOCAL_PART_MAX_OCTETS} bytes (RFC 5321)"
        )
    return result.normalized


def has_encoded_word(local_part: str) -> bool:
    """Whether text holds an RFC 2047 encoded-word's delimiters: '=?' and, after it, '?='.

    Stricter than the grammar on purpose: lenient decoders (Python's email
    package among them) decode looser forms too.
    """
    start = local_part.find("=?")
    return start >= 0 and "?=" in local_part[start + 2 :]


class Subscribers:
    """The `subscribers` table of a `Database`: one row per address (case-insensitive)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = db.tables.subscribers

    def add(
        self,
        email: str,
        edition: Edition | str = Edition.KO,
        name: str = "",
        *,
        state: SubscriberState = SubscriberState.ACTIVE,
        reactivate: bool = False,
        at: dt.datetime | None = None,
        preferences: Preferences | None = None,
    ) -> Subscriber:
        """Add a subscriber, or update edition/name (and `preferences`) of an existing one.

        An address that left (unsubscribed, bounced, complained) is reactivated
        only with reactivate=True (NewsletterError otherwise, and for an invalid
        address). `at` is the time recorded (default: now).
        """
        with self.db.engine.begin() as conn:
            subscriber, _ = self.add_in(
                conn, email, Edition(edition), name, state, reactivate, at=at,
                preferences=preferences,
            )  # fmt: skip
        return subscriber

    def add_in(
        self,
        conn: Any,
        email: str,
        edition: Edition,
        name: str,
        state: SubscriberState,
        reactivate: bool,
        *,
        at: dt.datetime | None = None,
        history: History | None = None,
        preferences: Preferences | None = None,
    ) -> tuple[Subscriber, Change]:
        """`add` inside the caller's transaction `conn`; also says what it changed.

        A new address gets `state`, `preferences` and, if given, the counts and
        times of `history` (an import of an export). An existing one keeps its
        state, except that a departure (`state` in LEFT_STATES) is recorded,
        and `reactivate` brings back one that left; a new cadence follows the
        rule of `newsletter.cadence` (at once for one that was not active).
        """
        import sqlalchemy as sa

        address = normalize_email(email)
        name = " ".join(name.split())
        t = self.table
        when = stamp(at)
        kept = history or History()
        wanted = preferences or Preferences()
        row = conn.execute(sa.select(t).where(t.c.email_key == address.lower())).first()
        if row is None:
            values = new_row(address, edition, name, state, when, kept, wanted)
            conn.execute(t.insert().values(**values))
            return self._get(conn, address), "added"
        left = row.state in LEFT_STATES
        leaving = state in LEFT_STATES
        if left and not leaving and not reactivate:
            raise NewsletterError(
                f"{address} is {row.state}; not re-subscribing it",
                hint="re-add it with --reactivate only if its owner asked",
            )
        values: dict[str, Any] = {"edition": edition.value, "name": name or row.name}
        values |= preference_values(subscriber_from_row(row), wanted, when)
        if left and not leaving:
            values |= {"state": state.value, "hard_bounces": 0}
        elif leaving and not left:
            values |= {
                "state": state.value,
                "hard_bounces": max(row.hard_bounces, kept.hard_bounces),
            }
        if all(row._mapping[key] == value for key, value in values.items()):
            return subscriber_from_row(row), "unchanged"
        if values.get("state", row.state) != row.state:
            values["state_changed_at"] = stamp(kept.state_changed_at or when)
        conn.execute(t.update().where(t.c.id == row.id).values(updated_at=when, **values))
        return self._get(conn, address), "updated"

    def _get(self, conn: Any, email: str) -> Subscriber:
        import sqlalchemy as sa

        t = self.table
        row = conn.execute(sa.select(t).where(t.c.email_key == email.lower())).first()
        if row is None:
            raise NewsletterError(
                f"{email} is not a subscriber", hint="see them with 'newsletter subscribers list'"
            )
        return subscriber_from_row(row)

    def get(self, email: str) -> Subscriber | None:
        """The subscriber with this address (any state); None if unknown or not an address."""
        import sqlalchemy as sa

        try:
            key = normalize_email(email)
        except NewsletterError:
            return None
        with self.db.engine.connect() as conn:
            t = self.table
            row = conn.execute(sa.select(t).where(t.c.email_key == key.lower())).first()
        return subscriber_from_row(row) if row else None

    def hard_bounces(self, email: str) -> int:
        """Hard bounces counted for this (normalised) address since it last (re)joined."""
        import sqlalchemy as sa

        t = self.table
        with self.db.engine.connect() as conn:
            value = conn.execute(
                sa.select(t.c.hard_bounces).where(t.c.email_key == email.lower())
            ).scalar()
        return int(value or 0)

    def remove(self, email: str, at: dt.datetime | None = None) -> Subscriber:
        """Mark unsubscribed (the row and its delivery history stay)."""
        return self.set_state(email, SubscriberState.UNSUBSCRIBED, at)

    def set_state(
        self, email: str, state: SubscriberState | str, at: dt.datetime | None = None
    ) -> Subscriber:
        """Set the state (and, if it changes, state_changed_at to `at`, default now).

        NewsletterError if the address is not a subscriber.
        """
        import sqlalchemy as sa

        value = SubscriberState(state).value
        when = stamp(at)
        changed = sa.case((self.table.c.state != value, when), else_=self.table.c.state_changed_at)
        return self._update(email, when, state=value, state_changed_at=changed)

    def set_edition(
        self, email: str, edition: Edition | str, at: dt.datetime | None = None
    ) -> Subscriber:
        """Set the edition; NewsletterError if the address is not a subscriber."""
        return self._update(email, stamp(at), edition=Edition(edition).value)

    def set_preferences(
        self,
        email: str,
        preferences: Preferences,
        *,
        edition: Edition | str | None = None,
        at: dt.datetime | None = None,
    ) -> Subscriber:
        """Change edition, cadence and topics (None: unchanged); a new cadence
        follows the rule of `newsletter.cadence`. NewsletterError if the address
        is not a subscriber."""
        import sqlalchemy as sa

        address = normalize_email(email)
        when = stamp(at)
        t = self.table
        with self.db.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.email_key == address.lower())).first()
            if row is None:
                raise NewsletterError(
                    f"{address} is not a subscriber",
                    hint="add it first with 'newsletter subscribers add'",
                )
            values = preference_values(subscriber_from_row(row), preferences, when)
            if edition is not None:
                values["edition"] = Edition(edition).value
            if any(row._mapping[key] != value for key, value in values.items()):
                conn.execute(t.update().where(t.c.id == row.id).values(updated_at=when, **values))
            return self._get(conn, address)

    def _update(self, email: str, when: dt.datetime, **values: Any) -> Subscriber:
        address = normalize_email(email)
        t = self.table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update().where(t.c.email_key == address.lower()).values(updated_at=when, **values)
            )
            if result.rowcount == 0:
                raise NewsletterError(
                    f"{address} is not a subscriber",
                    hint="add it first with 'newsletter subscribers add'",
                )
            return self._get(conn, address)

    def list(
        self, state: SubscriberState | str | None = None, edition: Edition | str | None = None
    ) -> list[Subscriber]:
        """Subscribers in the order they joined, optionally of one state and/or edition."""
        import sqlalchemy as sa

        t = self.table
        query = sa.select(t).order_by(t.c.id)
        if state is not None:
            query = query.where(t.c.state == SubscriberState(state).value)
        if edition is not None:
            query = query.where(t.c.edition == Edition(edition).value)
        with self.db.engine.connect() as conn:
            return [subscriber_from_row(row) for row in conn.execute(query)]

    def count(self) -> dict[str, int]:
        """Subscribers by state value (states with none are left out)."""
        import sqlalchemy as sa

        t = self.table
        with self.db.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))
            return {state: n for state, n in rows}

    def add_many(
        self,
        rows: Iterable[
            tuple[str, Edition | str, str] | tuple[str, Edition | str, str, Preferences]
        ],
        *,
        chunk: int = 5000,
    ) -> int:
        """Bulk path for large lists (benchmarks, migrations): (email, edition, name) rows,
        or (email, edition, name, preferences).

        Each address is normalised; addresses already in the database (or repeated
        in `rows`) are left alone, so it never reactivates anyone. One transaction,
        executemany inserts of `chunk` rows. Returns how many subscribers were added.
        """
        t = self.table
        added = 0
        when = now()
        batch: list[dict[str, Any]] = []

        def flush(conn: Any) -> int:
            existing = self.existing_keys(conn, [row["email_key"] for row in batch])
            fresh = [row for row in batch if row["email_key"] not in existing]
            if fresh:
                conn.execute(t.insert(), fresh)
            batch.clear()
            return len(fresh)

        seen: set[str] = set()
        with self.db.engine.begin() as conn:
            for email, edition, name, *wanted in rows:
                address = normalize_email(email)
                key = address.lower()
                if key in seen:
                    continue
                seen.add(key)
                active = SubscriberState.ACTIVE
                preferences = wanted[0] if wanted else None
                batch.append(
                    new_row(address, Edition(edition), name, active, when, None, preferences)
                )
                if len(batch) >= chunk:
                    added += flush(conn)
            if batch:
                added += flush(conn)
        return added

    def existing_keys(self, conn: Any, keys: list[str]) -> set[str]:
        """Which of these email keys (lower-cased addresses) are in the table.

        One query per call inside the caller's transaction: pass at most ~500.
        """
        import sqlalchemy as sa

        t = self.table
        query = sa.select(t.c.email_key).where(t.c.email_key.in_(keys))
        return {key for (key,) in conn.execute(query)}


def preference_values(
    current: Subscriber, wanted: Preferences, when: dt.datetime
) -> dict[str, Any]:
    """The columns `wanted` changes on the row of `current` (none if it asks for nothing)."""
    values: dict[str, Any] = {}
    if wanted.topics is not None:
        values["topics"] = topics_text(wanted.topics)
    if wanted.cadence is not None:
        at_once = current.state is not SubscriberState.ACTIVE
        schedule = wanted.schedule or cadences.WeeklySchedule()
        values |= cadences.change(current, wanted.cadence, when, schedule, at_once=at_once)
    return values


def new_row(
    address: str,
    edition: Edition,
    name: str,
    state: SubscriberState,
    when: dt.datetime,
    history: History | None = None,
    preferences: Preferences | None = None,
) -> dict[str, Any]:
    """The column values of a new subscriber (`address` already normalised).

    Times come from `history` where it has them, else `when` (aware); a
    cadence change still waiting also comes from `history` (an import).
    """
    kept = history or History()
    wanted = preferences or Preferences()
    created = stamp(kept.created_at or when)
    pending = kept.cadence_from is not None and kept.previous_cadence is not None
    return {
        "email": address,
        "email_key": address.lower(),
        "edition": edition.value,
        "name": " ".join(name.split()),
        "state": state.value,
        "hard_bounces": kept.hard_bounces,
        "created_at": created,
        "updated_at": stamp(kept.updated_at or when),
        "state_changed_at": stamp(kept.state_changed_at or created),
        "cadence": (wanted.cadence or Cadence.DAILY).value,
        "topics": topics_text(wanted.topics or ()),
        "previous_cadence": kept.previous_cadence.value
        if pending and kept.previous_cadence
        else None,
        "cadence_from": kept.cadence_from if pending else None,
    }


def subscriber_from_row(row: sa.Row[Any]) -> Subscriber:
    """A `Subscriber` from a row of the subscribers table."""
    previous = row.previous_cadence
    return Subscriber(
        email=row.email,
        edition=Edition(row.edition),
        state=SubscriberState(row.state),
        name=row.name,
        id=row.id,
        state_changed_at=as_utc(row.state_changed_at),
        cadence=Cadence(row.cadence),
        topics=tuple(row.topics.split(",")) if row.topics else (),
        previous_cadence=Cadence(previous) if previous else None,
        cadence_from=row.cadence_from,
    )
