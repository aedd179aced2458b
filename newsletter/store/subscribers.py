"""The subscriber list: add, look up, change state or edition, count.

Re-adding an address that unsubscribed or bounced does NOT reactivate it unless
the caller passes `reactivate=True` (the owner asked again): an import of an old
list must never re-subscribe people who left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from newsletter.errors import NewsletterError
from newsletter.model import Edition, Subscriber, SubscriberState
from newsletter.store.database import now

if TYPE_CHECKING:
    import sqlalchemy as sa

    from newsletter.store.database import Database

# What add_in did to the row.
Change = Literal["added", "updated", "unchanged"]


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
    ) -> Subscriber:
        """Add a subscriber, or update edition/name of an existing active one.

        An unsubscribed or bounced address is reactivated only with reactivate=True
        (NewsletterError otherwise, and for an invalid address).
        """
        with self.db.engine.begin() as conn:
            subscriber, _ = self.add_in(conn, email, Edition(edition), name, state, reactivate)
        return subscriber

    def add_in(
        self,
        conn: Any,
        email: str,
        edition: Edition,
        name: str,
        state: SubscriberState,
        reactivate: bool,
    ) -> tuple[Subscriber, Change]:
        """`add` inside the caller's transaction `conn`; also says what it changed."""
        import sqlalchemy as sa

        address = normalize_email(email)
        name = " ".join(name.split())
        t = self.table
        stamp = now()
        row = conn.execute(sa.select(t).where(t.c.email_key == address.lower())).first()
        if row is None:
            conn.execute(
                t.insert().values(
                    email=address,
                    email_key=address.lower(),
                    edition=edition.value,
                    name=name,
                    state=state.value,
                    hard_bounces=0,
                    created_at=stamp,
                    updated_at=stamp,
                )
            )
            return self._get(conn, address), "added"
        left = row.state in (SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED)
        if left and not reactivate:
            raise NewsletterError(
                f"{address} is {row.state}; not re-subscribing it",
                hint="re-add it with reactivate (--reactivate) only if its owner asked",
            )
        values: dict[str, Any] = {"edition": edition.value, "name": name or row.name}
        if left:
            values |= {"state": state.value, "hard_bounces": 0}
        if all(row._mapping[key] == value for key, value in values.items()):
            return subscriber_from_row(row), "unchanged"
        conn.execute(t.update().where(t.c.id == row.id).values(updated_at=stamp, **values))
        return self._get(conn, address), "updated"

    def _get(self, conn: Any, email: str) -> Subscriber:
        import sqlalchemy as sa

        t = self.table
        row = conn.execute(sa.select(t).where(t.c.email_key == email.lower())).first()
        if row is None:
            raise NewsletterError(f"{email} is not a subscriber", hint="list them with 'list'")
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

    def remove(self, email: str) -> Subscriber:
        """Mark unsubscribed (the row and its delivery history stay)."""
        return self.set_state(email, SubscriberState.UNSUBSCRIBED)

    def set_state(self, email: str, state: SubscriberState | str) -> Subscriber:
        """Set the state; NewsletterError if the address is not a subscriber."""
        return self._update(email, state=SubscriberState(state).value)

    def set_edition(self, email: str, edition: Edition | str) -> Subscriber:
        """Set the edition; NewsletterError if the address is not a subscriber."""
        return self._update(email, edition=Edition(edition).value)

    def _update(self, email: str, **values: Any) -> Subscriber:
        address = normalize_email(email)
        t = self.table
        with self.db.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.email_key == address.lower())
                .values(updated_at=now(), **values)
            )
            if result.rowcount == 0:
                raise NewsletterError(f"{address} is not a subscriber", hint="add it first")
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

    def add_many(self, rows: Iterable[tuple[str, Edition | str, str]], *, chunk: int = 5000) -> int:
        """Bulk path for large lists (benchmarks, migrations): (email, edition, name) rows.

        Each address is normalised; addresses already in the database (or repeated
        in `rows`) are left alone, so it never reactivates anyone. One transaction,
        executemany inserts of `chunk` rows. Returns how many subscribers were added.
        """
        import sqlalchemy as sa

        t = self.table
        added = 0
        stamp = now()
        batch: list[dict[str, Any]] = []

        def flush(conn: Any) -> int:
            keys = [row["email_key"] for row in batch]
            existing = {
                key
                for (key,) in conn.execute(sa.select(t.c.email_key).where(t.c.email_key.in_(keys)))
            }
            fresh = [row for row in batch if row["email_key"] not in existing]
            if fresh:
                conn.execute(t.insert(), fresh)
            batch.clear()
            return len(fresh)

        seen: set[str] = set()
        with self.db.engine.begin() as conn:
            for email, edition, name in rows:
                address = normalize_email(email)
                key = address.lower()
                if key in seen:
                    continue
                seen.add(key)
                batch.append(
                    {
                        "email": address,
                        "email_key": key,
                        "edition": Edition(edition).value,
                        "name": " ".join(name.split()),
                        "state": SubscriberState.ACTIVE.value,
                        "hard_bounces": 0,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
                if len(batch) >= chunk:
                    added += flush(conn)
            if batch:
                added += flush(conn)
        return added


def subscriber_from_row(row: sa.Row[Any]) -> Subscriber:
    """A `Subscriber` from a row of the subscribers table."""
    return Subscriber(
        email=row.email,
        edition=Edition(row.edition),
        state=SubscriberState(row.state),
        name=row.name,
        id=row.id,
    )
