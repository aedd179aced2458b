"""The database: subscribers and the delivery ledger (SQLAlchemy Core).

SQLite file by default (WAL, busy timeout), any SQLAlchemy URL (PostgreSQL)
with the same code. The schema is created and migrated here: a
`schema_version` table holds the version, `_MIGRATIONS` the steps.

Re-adding an address that unsubscribed or bounced does NOT reactivate it unless
the caller passes `reactivate=True` (the owner asked again): an import of an old
list must never re-subscribe people who left.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import functools
import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Edition, Subscriber, SubscriberState

if TYPE_CHECKING:
    import sqlalchemy as sa

    from newsletter.config import Config

SCHEMA_VERSION = 2
# Bound parameters per `IN (...)` list (SQLite allows 999 in old builds).
_IN_CHUNK = 500


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
        try:
            self.engine = sa.create_engine(url, connect_args=connect_args, future=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise NewsletterError(
                f"cannot use the database URL {url!r}: {exc}",
                hint="check database_url; PostgreSQL needs pip install -e '.[postgres]'",
            ) from None
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

    @contextlib.contextmanager
    def sending_lock(self, date: dt.date) -> Iterator[None]:
        """Hold the right to send the issue of `date`; refuse if someone else has it.

        SQLite: an flock beside the database file (one machine). PostgreSQL: a
        session advisory lock, which also covers senders on other machines. The
        lock dies with its process, so a crash never leaves it stuck.
        """
        busy = NewsletterError(
            f"another process is sending the {date.isoformat()} issue right now",
            hint="wait for it to finish: the ledger makes a later run send only what is left",
        )
        if self.engine.dialect.name == "postgresql":
            key = int.from_bytes(
                hashlib.sha256(f"newsletter-send-{date}".encode()).digest()[:8], "big", signed=True
            )
            with self.engine.connect() as conn:
                if not conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (key,)).scalar():
                    raise busy
                try:
                    yield
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (key,))
            return
        database = self.engine.url.database
        if self.engine.dialect.name != "sqlite" or not database or database == ":memory:":
            yield  # one process: nothing else can reach this database
            return
        path = Path(f"{database}.send-{date.isoformat()}.lock")
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy from None
            yield

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
        problems: list[ImportProblem] = []
        if isinstance(path, (str, os.PathLike)):
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise NewsletterError(f"cannot read {path}: {exc.strerror or exc}") from None
            text = _decode_lines(data, problems)
        else:
            text = path.read()
        counts = {"added": 0, "updated": 0, "unchanged": 0}
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
        return ImportReport(problems=tuple(sorted(problems, key=lambda p: p.line)), **counts)

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
        todo = [subscriber for page in self.plan_pages(date, editions) for subscriber in page]
        return todo, self._skipped(date, editions)

    def start_deliveries(self, date: dt.date, subscribers: Iterable[Subscriber]) -> None:
        """Ledger rows in state 'pending' for these subscribers (existing rows kept).

        Called once per page of the plan, so it costs per page, not per row: one
        INSERT ... SELECT from the subscribers table per edition and chunk of
        `_IN_CHUNK` addresses (a subscriber not in the table gets no row).
        """
        sa = self._sa
        d, s = self.deliveries, self.subscribers
        day = date.isoformat()
        now = _now()
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
        with self.engine.begin() as conn:
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
                            sa.literal(now, d.c.created_at.type),
                            sa.literal(now, d.c.updated_at.type),
                        )
                        .where(s.c.edition == edition)
                        .where(s.c.email_key.in_(keys[start : start + _IN_CHUNK]))
                        .where(~sa.exists(exists))
                    )
                    conn.execute(d.insert().from_select(columns, rows))

    def record(
        self,
        date: dt.date,
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
        """
        if not outcomes:
            return []
        sa = self._sa
        d, s = self.deliveries, self.subscribers
        now = _now()
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
                "b_date": day,
                "b_edition": o.edition.value,
                "b_key": o.email.lower(),
                "b_state": o.state,
                "b_reply": o.reply[:500],
                "b_sent_at": now if o.state == DeliveryState.SENT else None,
            }
            for o in others
        ]
        bounces = [{"b_key": o.email.lower()} for o in outcomes if o.hard_bounce]
        with self.engine.begin() as conn:
            for (edition, reply), keys in sent.items():
                for start in range(0, len(keys), _IN_CHUNK):
                    conn.execute(
                        self._sent_update,
                        {
                            "b_date": day,
                            "b_edition": edition,
                            "b_keys": keys[start : start + _IN_CHUNK],
                            "b_reply": reply,
                            "b_now": now,
                        },
                    )
            if rows:
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
        return given_up

    def _give_up(
        self, date: dt.date, outcomes: list[Outcome], max_attempts: int
    ) -> tuple[list[Outcome], list[Outcome]]:
        """Split outcomes into (as they are, temporary ones turned final at the cap)."""
        temporary = [o for o in outcomes if o.state == DeliveryState.PENDING]
        if not temporary:
            return outcomes, []
        d = self.deliveries
        attempts: dict[tuple[str, str], int] = {}
        keys = sorted({o.email.lower() for o in temporary})
        with self.engine.connect() as conn:
            for start in range(0, len(keys), _IN_CHUNK):
                query = self._sa.select(d.c.edition, d.c.email_key, d.c.attempts).where(
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

    def add_many(self, rows: Iterable[tuple[str, Edition | str, str]], *, chunk: int = 5000) -> int:
        """Bulk path for large lists (benchmarks, migrations): (email, edition, name) rows.

        Each address is normalised; addresses already in the database (or repeated
        in `rows`) are left alone, so it never reactivates anyone. One transaction,
        executemany inserts of `chunk` rows. Returns how many subscribers were added.
        """
        sa = self._sa
        t = self.subscribers
        added = 0
        now = _now()
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
        with self.engine.begin() as conn:
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
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                if len(batch) >= chunk:
                    added += flush(conn)
            if batch:
                added += flush(conn)
        return added

    def _plan_query(self, date: dt.date, editions: Sequence[Edition], columns: Any) -> Any:
        """SELECT columns FROM active subscribers of `editions` not yet done on `date`.

        "Done" is sent or failed in any edition; NOT EXISTS on the ledger's
        primary key is an index lookup per subscriber (a NOT IN subquery would be
        rebuilt for every page).
        """
        sa = self._sa
        s, d = self.subscribers, self.deliveries
        done = (
            sa.select(sa.literal(1))
            .where(d.c.issue_date == date.isoformat())
            .where(d.c.edition.in_([e.value for e in Edition]))
            .where(d.c.email_key == s.c.email_key)
            .where(d.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED]))
        )
        return (
            sa.select(*columns)
            .where(s.c.state == SubscriberState.ACTIVE.value)
            .where(s.c.edition.in_([e.value for e in editions]))
            .where(~sa.exists(done))
        )

    def plan_counts(
        self, date: dt.date, editions: Sequence[Edition]
    ) -> tuple[dict[Edition, int], int]:
        """Like delivery_plan, without the list: (messages to send per edition, skipped)."""
        sa = self._sa
        s = self.subscribers
        query = self._plan_query(date, editions, [s.c.edition, sa.func.count()]).group_by(
            s.c.edition
        )
        with self.engine.connect() as conn:
            counts = {Edition(edition): int(n) for edition, n in conn.execute(query)}
        return counts, self._skipped(date, editions)

    def _skipped(self, date: dt.date, editions: Sequence[Edition]) -> int:
        """Active subscribers of `editions` already sent or failed on `date`."""
        sa = self._sa
        s, d = self.subscribers, self.deliveries
        done = (
            sa.select(d.c.email_key)
            .where(d.c.issue_date == date.isoformat())
            .where(d.c.state.in_([DeliveryState.SENT, DeliveryState.FAILED]))
        )
        query = sa.select(sa.func.count()).select_from(
            sa.select(s.c.id)
            .where(s.c.state == SubscriberState.ACTIVE.value)
            .where(s.c.edition.in_([e.value for e in editions]))
            .where(s.c.email_key.in_(done))
            .subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def plan_pages(
        self, date: dt.date, editions: Sequence[Edition], *, page: int = 2000
    ) -> Iterator[list[Subscriber]]:
        """The delivery plan in pages of `page` subscribers, by id (keyset pagination).

        Memory stays flat however long the list: one short read per page, no
        read transaction held open while sending (SQLite's WAL can checkpoint).
        Someone who unsubscribes meanwhile is left out of the pages not yet read.
        """
        s = self.subscribers
        last = 0
        while True:
            query = (
                self._plan_query(date, editions, [s])
                .where(s.c.id > last)
                .order_by(s.c.id)
                .limit(page)
            )
            with self.engine.connect() as conn:
                rows = [_subscriber(row) for row in conn.execute(query)]
            if not rows:
                return
            yield rows
            last = rows[-1].id or last
            if len(rows) < page:
                return

    @functools.cached_property
    def _sent_update(self) -> Any:
        """record()'s UPDATE for sent messages, built once (building costs more than running)."""
        sa = self._sa
        d = self.deliveries
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


_MIGRATIONS: dict[int, Callable[[Store, Any], None]] = {
    1: Store._migrate_1,
    2: Store._migrate_2,
}


def _decode_lines(data: bytes, problems: list[ImportProblem]) -> str:
    """UTF-8 text of a CSV file; a line that is not UTF-8 is reported and left blank
    (so the good lines keep their numbers and are still imported)."""
    lines = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
    out = []
    for number, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            shown = raw.decode("utf-8", "replace").strip()
            problems.append(ImportProblem(number, shown, "not UTF-8 text (save the file as UTF-8)"))
            out.append("")
    return "\n".join(out)


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
