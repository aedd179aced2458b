"""The database: subscribers and the delivery ledger (SQLAlchemy Core).

SQLite file by default (WAL, busy timeout), any SQLAlchemy URL (PostgreSQL)
with the same code. The schema is created and migrated here: a
`schema_version` table holds the version, `_MIGRATIONS` the steps.

Re-adding an address that unsubscribed or bounced does NOT reactivate it unless
the caller passes `reactivate=True` (the owner asked again): an import of an old
list must never re-subscribe people who left.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Edition, Subscriber, SubscriberState

if TYPE_CHECKING:
    import sqlalchemy as sa

    from newsletter.config import Config

SCHEMA_VERSION = 2


class DeliveryState:
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class ImportProblem:
    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason} ({self.text!r})"


@dataclass(frozen=True)
class ImportReport:
    added: int
    updated: int
    unchanged: int
    problems: tuple[ImportProblem, ...]


@dataclass(frozen=True)
class Delivery:
    date: dt.date
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


def normalize_email(address: str) -> str:
    """The canonical form of an address; NewsletterError if it is not one."""
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise NewsletterError(f"{address!r} is not a valid email address: {exc}") from None
    return result.normalized


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _tables(sa: Any) -> tuple[Any, ...]:
    metadata = sa.MetaData()
    version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))
    subscribers = sa.Table(
        "subscribers",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        # Lower-cased: Foo@x and foo@x are one subscriber (one copy, not two).
        sa.Column("email_key", sa.String(320), nullable=False, unique=True),
        sa.Column("edition", sa.String(8), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("hard_bounces", sa.Integer, nullable=False, default=0),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_subscribers_state", "state"),
    )
    deliveries = sa.Table(
        "deliveries",
        metadata,
        sa.Column("issue_date", sa.String(10), primary_key=True),
        sa.Column("edition", sa.String(8), primary_key=True),
        sa.Column("email_key", sa.String(320), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("last_reply", sa.String(500), nullable=False, default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    # One row per issue whose email is done: the daemon never sends it again,
    # even to someone who subscribed after it went out.
    issues = sa.Table(
        "issues",
        metadata,
        sa.Column("issue_date", sa.String(10), primary_key=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=False),
    )
    return metadata, version, subscribers, deliveries, issues


class Store:
    """Subscribers and deliveries in one SQL database. Not thread-safe: one user."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.url = url
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            connect_args = {"timeout": 30}
        self.engine = sa.create_engine(url, connect_args=connect_args, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        (
            self._metadata,
            self._version,
            self.subscribers,
            self.deliveries,
            self.issues,
        ) = _tables(sa)
        try:
            self._migrate()
        except sa.exc.OperationalError as exc:
            raise NewsletterError(
                f"cannot open the database {self.engine.url.render_as_string()}: {exc.orig}",
                hint="check database_url / paths.state and that the server is running",
            ) from None

    @classmethod
    def open(cls, config: Config) -> Store:
        """The configured database; creates paths.state for the default SQLite file."""
        if config.database_url is None:
            config.paths.state.mkdir(parents=True, exist_ok=True)
        return cls(config.db_url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- schema ---------------------------------------------------------------

    def _migrate(self) -> None:
        sa = self._sa
        with self.engine.begin() as conn:
            self._version.create(conn, checkfirst=True)
            current = conn.execute(sa.select(self._version.c.version)).scalar()
            if current is None:
                current = 0
                conn.execute(self._version.insert().values(version=0))
            if current > SCHEMA_VERSION:
                raise NewsletterError(
                    f"the database has schema version {current}, newer than this program "
                    f"({SCHEMA_VERSION})",
                    hint="upgrade newsletter",
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                _MIGRATIONS[version](self, conn)
                conn.execute(self._version.update().values(version=version))

    def _migrate_1(self, conn: Any) -> None:
        self._metadata.create_all(conn, tables=[self.subscribers, self.deliveries])

    def _migrate_2(self, conn: Any) -> None:
        self._metadata.create_all(conn, tables=[self.issues])

    # --- subscribers ----------------------------------------------------------

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

        An unsubscribed or bounced address is reactivated only with reactivate=True.
        """
        with self.engine.begin() as conn:
            subscriber, _ = self._add(conn, email, Edition(edition), name, state, reactivate)
        return subscriber

    def _add(
        self,
        conn: Any,
        email: str,
        edition: Edition,
        name: str,
        state: SubscriberState,
        reactivate: bool,
    ) -> tuple[Subscriber, str]:
        sa = self._sa
        address = normalize_email(email)
        name = " ".join(name.split())
        t = self.subscribers
        now = _now()
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
                    created_at=now,
                    updated_at=now,
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
            return _subscriber(row), "unchanged"
        conn.execute(t.update().where(t.c.id == row.id).values(updated_at=now, **values))
        return self._get(conn, address), "updated"

    def _get(self, conn: Any, email: str) -> Subscriber:
        t = self.subscribers
        row = conn.execute(self._sa.select(t).where(t.c.email_key == email.lower())).first()
        if row is None:
            raise NewsletterError(f"{email} is not a subscriber", hint="list them with 'list'")
        return _subscriber(row)

    def get(self, email: str) -> Subscriber | None:
        try:
            key = normalize_email(email)
        except NewsletterError:
            return None
        with self.engine.connect() as conn:
            t = self.subscribers
            row = conn.execute(self._sa.select(t).where(t.c.email_key == key.lower())).first()
        return _subscriber(row) if row else None

    def hard_bounces(self, email: str) -> int:
        t = self.subscribers
        with self.engine.connect() as conn:
            value = conn.execute(
                self._sa.select(t.c.hard_bounces).where(t.c.email_key == email.lower())
            ).scalar()
        return int(value or 0)

    def remove(self, email: str) -> Subscriber:
        """Mark unsubscribed (the row and its delivery history stay)."""
        return self.set_state(email, SubscriberState.UNSUBSCRIBED)

    def set_state(self, email: str, state: SubscriberState | str) -> Subscriber:
        return self._update(email, state=SubscriberState(state).value)

    def set_edition(self, email: str, edition: Edition | str) -> Subscriber:
        return self._update(email, edition=Edition(edition).value)

    def _update(self, email: str, **values: Any) -> Subscriber:
        address = normalize_email(email)
        t = self.subscribers
        with self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.email_key == address.lower())
                .values(updated_at=_now(), **values)
            )
            if result.rowcount == 0:
                raise NewsletterError(f"{address} is not a subscriber", hint="add it first")
            return self._get(conn, address)

    def list(
        self, state: SubscriberState | str | None = None, edition: Edition | str | None = None
    ) -> list[Subscriber]:
        t = self.subscribers
        query = self._sa.select(t).order_by(t.c.id)
        if state is not None:
            query = query.where(t.c.state == SubscriberState(state).value)
        if edition is not None:
            query = query.where(t.c.edition == Edition(edition).value)
        with self.engine.connect() as conn:
            return [_subscriber(row) for row in conn.execute(query)]

    def count(self) -> dict[str, int]:
        t = self.subscribers
        sa = self._sa
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.state, sa.func.count()).group_by(t.c.state))
            return {state: n for state, n in rows}

    def import_csv(
        self, path: str | os.PathLike[str] | TextIO, *, default_edition: Edition = Edition.KO
    ) -> ImportReport:
        """Import email,edition[,name] rows; bad rows are reported by line, good ones kept.

        A header row is optional. Addresses that unsubscribed or bounced are not
        re-subscribed (reported as problems).
        """
        if isinstance(path, (str, os.PathLike)):
            try:
                text = Path(path).read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                raise NewsletterError(f"cannot read {path}: {exc}") from None
        else:
            text = path.read()
        counts = {"added": 0, "updated": 0, "unchanged": 0}
        problems: list[ImportProblem] = []
        seen: dict[str, int] = {}
        with self.engine.begin() as conn:
            for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
                cells = [cell.strip() for cell in row]
                raw = ",".join(row)
                if not any(cells) or cells[0].startswith("#"):
                    continue
                if line == 1 and cells[0].lower() in ("email", "e-mail", "address"):
                    continue
                if len(cells) > 3:
                    problems.append(
                        ImportProblem(line, raw, "too many columns (email,edition,name)")
                    )
                    continue
                email, edition_text, name = ([*cells, "", ""])[:3]
                try:
                    edition = Edition(edition_text.lower()) if edition_text else default_edition
                except ValueError:
                    problems.append(
                        ImportProblem(line, raw, f"unknown edition {edition_text!r} (ko, en, both)")
                    )
                    continue
                try:
                    address = normalize_email(email)
                except NewsletterError as exc:
                    problems.append(ImportProblem(line, raw, exc.message))
                    continue
                if address.lower() in seen:
                    problems.append(
                        ImportProblem(
                            line, raw, f"duplicate of line {seen[address.lower()]}; skipped"
                        )
                    )
                    continue
                seen[address.lower()] = line
                try:
                    _, what = self._add(conn, address, edition, name, SubscriberState.ACTIVE, False)
                except NewsletterError as exc:
                    problems.append(ImportProblem(line, raw, exc.message))
                    continue
                counts[what] += 1
        return ImportReport(problems=tuple(problems), **counts)

    def export_csv(self, stream: TextIO, state: SubscriberState | str | None = None) -> int:
        """Write email,edition,name,state rows (with a header); returns the row count."""
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["email", "edition", "name", "state"])
        rows = self.list(state=state)
        for sub in rows:
            writer.writerow([sub.email, sub.edition.value, sub.name, sub.state.value])
        return len(rows)

    # --- deliveries -----------------------------------------------------------

    def delivery_plan(
        self, date: dt.date, editions: Sequence[Edition]
    ) -> tuple[list[Subscriber], int]:
        """Active subscribers of these editions still to mail for date, and how many
        were skipped (already sent, or failed permanently, in any edition that day)."""
        sa = self._sa
        s, d = self.subscribers, self.deliveries
        done = (
            sa.select(d.c.email_key)
            .where(d.c.issue_date == date.isoformat())
            .where(d.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED]))
        )
        base = (
            sa.select(s)
            .where(s.c.state == SubscriberState.ACTIVE.value)
            .where(s.c.edition.in_([e.value for e in editions]))
        )
        with self.engine.connect() as conn:
            todo = [
                _subscriber(row)
                for row in conn.execute(base.where(s.c.email_key.not_in(done)).order_by(s.c.id))
            ]
            skipped = conn.execute(
                sa.select(sa.func.count()).select_from(
                    base.where(s.c.email_key.in_(done)).subquery()
                )
            ).scalar()
        return todo, int(skipped or 0)

    def start_deliveries(self, date: dt.date, subscribers: Iterable[Subscriber]) -> None:
        """Ledger rows in state 'pending' for these recipients (existing rows kept)."""
        sa = self._sa
        d = self.deliveries
        now = _now()
        with self.engine.begin() as conn:
            existing = {
                (row.edition, row.email_key)
                for row in conn.execute(
                    sa.select(d.c.edition, d.c.email_key).where(d.c.issue_date == date.isoformat())
                )
            }
            rows = [
                {
                    "issue_date": date.isoformat(),
                    "edition": sub.edition.value,
                    "email_key": sub.email.lower(),
                    "email": sub.email,
                    "state": DeliveryState.PENDING,
                    "attempts": 0,
                    "last_reply": "",
                    "created_at": now,
                    "updated_at": now,
                }
                for sub in subscribers
                if (sub.edition.value, sub.email.lower()) not in existing
            ]
            if rows:
                conn.execute(d.insert(), rows)

    def record(self, date: dt.date, outcomes: Sequence[Outcome], bounce_limit: int) -> None:
        """Write a batch of outcomes in one transaction (executemany)."""
        if not outcomes:
            return
        sa = self._sa
        d, s = self.deliveries, self.subscribers
        now = _now()
        update = (
            d.update()
            .where(d.c.issue_date == sa.bindparam("b_date"))
            .where(d.c.edition == sa.bindparam("b_edition"))
            .where(d.c.email_key == sa.bindparam("b_key"))
            .values(
                state=sa.bindparam("b_state"),
                attempts=d.c.attempts + 1,
                last_reply=sa.bindparam("b_reply"),
                updated_at=now,
                sent_at=sa.bindparam("b_sent_at"),
            )
        )
        rows = [
            {
                "b_date": date.isoformat(),
                "b_edition": o.edition.value,
                "b_key": o.email.lower(),
                "b_state": o.state,
                "b_reply": o.reply[:500],
                "b_sent_at": now if o.state == DeliveryState.SENT else None,
            }
            for o in outcomes
        ]
        bounces = [{"b_key": o.email.lower()} for o in outcomes if o.hard_bounce]
        with self.engine.begin() as conn:
            conn.execute(update, rows)
            if bounces:
                conn.execute(
                    s.update()
                    .where(s.c.email_key == sa.bindparam("b_key"))
                    .values(
                        hard_bounces=s.c.hard_bounces + 1,
                        state=sa.case(
                            (
                                s.c.hard_bounces + 1 >= bounce_limit,
                                SubscriberState.BOUNCED.value,
                            ),
                            else_=s.c.state,
                        ),
                        updated_at=now,
                    ),
                    bounces,
                )

    def deliveries_for(self, date: dt.date) -> list[Delivery]:
        d = self.deliveries
        query = (
            self._sa.select(d)
            .where(d.c.issue_date == date.isoformat())
            .order_by(d.c.edition, d.c.email_key)
        )
        with self.engine.connect() as conn:
            return [
                Delivery(
                    date=dt.date.fromisoformat(row.issue_date),
                    edition=Edition(row.edition),
                    email=row.email,
                    state=row.state,
                    attempts=row.attempts,
                    last_reply=row.last_reply,
                    sent_at=row.sent_at,
                )
                for row in conn.execute(query)
            ]

    def issue_emailed(self, date: dt.date) -> bool:
        """Whether the email of this issue is done (the daemon's send-once mark)."""
        query = self._sa.select(self.issues.c.issue_date).where(
            self.issues.c.issue_date == date.isoformat()
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def mark_issue_emailed(self, date: dt.date) -> None:
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    self._sa.select(self.issues.c.issue_date).where(
                        self.issues.c.issue_date == date.isoformat()
                    )
                ).first()
                is None
            ):
                conn.execute(
                    self.issues.insert().values(issue_date=date.isoformat(), emailed_at=_now())
                )

    def recent_delivery_counts(self, limit: int = 7) -> dict[str, dict[str, int]]:
        """Deliveries by state for the most recent issue dates, newest first."""
        sa = self._sa
        d = self.deliveries
        with self.engine.connect() as conn:
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

    def delivery_counts(self, date: dt.date) -> dict[str, int]:
        sa = self._sa
        d = self.deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(d.c.state, sa.func.count())
                .where(d.c.issue_date == date.isoformat())
                .group_by(d.c.state)
            )
            return {state: n for state, n in rows}


_MIGRATIONS: dict[int, Callable[[Store, Any], None]] = {
    1: Store._migrate_1,
    2: Store._migrate_2,
}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the web server) never block the sender; NORMAL: a commit
    # survives kill -9 (not a power cut), at a fraction of FULL's cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _subscriber(row: sa.Row[Any]) -> Subscriber:
    return Subscriber(
        email=row.email,
        edition=Edition(row.edition),
        state=SubscriberState(row.state),
        name=row.name,
        id=row.id,
    )
