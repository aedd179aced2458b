"""The database connection: engine, migrations on open, the sending lock.

SQLite file by default (WAL, busy timeout), any SQLAlchemy URL (PostgreSQL)
with the same code. The tables and their migrations are in `schema.py`; what is
kept in them is in the modules beside this one (`subscribers`, `ledger`), each
of which takes a `Database`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError, file_error
from newsletter.model import Week
from newsletter.store.schema import SCHEMA_VERSION, migrate, tables

if TYPE_CHECKING:
    from newsletter.config import Config


def now() -> dt.datetime:
    """The time the tables record: UTC, whole seconds."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Database:
    """One SQL database, migrated to the current schema. Not thread-safe: one user.

    `engine` is the SQLAlchemy engine, `tables` the `schema.Tables`. Raises
    NewsletterError for an unusable URL, a database that cannot be opened, or
    one newer than this program.
    """

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

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
        sa.event.listen(self.engine, "handle_error", self._explain)
        self.tables = tables()
        try:
            self._migrate()
        except sa.exc.OperationalError as exc:
            raise NewsletterError(
                f"cannot open the database {self.engine.url.render_as_string()}: {exc.orig}",
                hint="check database_url / paths.state and that the server is running",
            ) from None

    def _migrate(self) -> None:
        """Create or migrate the schema, safe when several processes start at once.

        A database already current is only read. Otherwise the migration runs
        under a lock held to its commit: SQLite's write lock taken up front
        (BEGIN IMMEDIATE; the others wait up to the busy timeout, then find the
        work done), PostgreSQL's transaction-level advisory lock. Without it,
        twelve `subscribers add` on a fresh folder failed with "table
        schema_version already exists" and left several version rows.
        """
        if self._schema_is_current():
            return
        if self.engine.dialect.name == "sqlite":
            # Autocommit at the driver, so that the BEGIN is ours (pysqlite
            # would otherwise open a deferred transaction only at the first write).
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    migrate(conn)
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
                conn.exec_driver_sql("COMMIT")
            return
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            migrate(conn)

    def _schema_is_current(self) -> bool:
        """Whether the schema is at this program's version already (one read, no lock)."""
        import sqlalchemy as sa

        version = self.tables.schema_version
        query = sa.select(sa.func.max(version.c.version), sa.func.count())
        try:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table(version.name):
                    return False
                current, rows = conn.execute(query).one()
        except sa.exc.ProgrammingError:
            return False
        return rows == 1 and current == SCHEMA_VERSION

    def _explain(self, context: Any) -> None:
        """SQLAlchemy's handle_error hook: a damaged file, a full disk, a read-only
        folder or an unreachable server becomes one NewsletterError naming the
        database and the cause, with a hint (`database_problem`). Anything else
        (a bug) keeps its traceback."""
        problem = database_problem(context.original_exception, self.engine.url)
        if problem is not None:
            raise problem from context.sqlalchemy_exception

    @classmethod
    def open(cls, config: Config) -> Database:
        """The configured database; creates paths.state for the default SQLite file."""
        if config.database_url is None:
            try:
                config.paths.state.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise file_error(exc, config.paths.state, "create") from exc
        return cls(config.db_url)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def sending_lock(self, date: dt.date | Week) -> Iterator[None]:
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


def database_problem(error: BaseException, url: Any) -> NewsletterError | None:
    """What a driver error means for the operator, or None if it is not one of theirs.

    SQLite (by the error's name, Python >= 3.11): NOTADB and CORRUPT are a
    damaged file; FULL and IOERR a full disk or failing device; READONLY and
    CANTOPEN permissions or a read-only folder; BUSY a lock held too long.
    PostgreSQL (by SQLSTATE): class 08 and 57P0x an unreachable server, 53 out
    of resources (53100: disk full), XX001/XX002 damaged data, 25006 read-only.
    """
    cause = " ".join(str(error).split())
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        folder = path.parent
        name = getattr(error, "sqlite_errorname", "") or ""
        kind = name.removeprefix("SQLITE_").split("_")[0]
        if kind in ("NOTADB", "CORRUPT"):
            return NewsletterError(
                f"the database {path} is damaged: {cause}",
                hint=f"restore it from a backup; or move it aside (mv {path} {path}.damaged) "
                "to start an empty one: the subscribers and the delivery ledger are in it "
                f"(sqlite3 {path}.damaged .recover may save what is left)",
            )
        if kind in ("FULL", "IOERR"):
            return NewsletterError(
                f"cannot write the database {path}: {cause}",
                hint=f"the disk holding {folder} is full or failing: free some space (df -h "
                f"{folder}), then run again; the failed write was rolled back, so the ledger "
                "is consistent and a rerun sends only what is left",
            )
        if kind in ("READONLY", "CANTOPEN", "PERM", "AUTH"):
            return NewsletterError(
                f"cannot open or write the database {path}: {cause}",
                hint=f"this user must be able to write {path} and, beside it, {path.name}-wal, "
                f"{path.name}-shm and new files in {folder} (paths.state), on a writable "
                "file system",
            )
        if kind in ("BUSY", "LOCKED"):
            return NewsletterError(
                f"the database {path} stayed locked: {cause}",
                hint="another process held it for longer than the 30 s busy timeout; "
                "run again when it is done",
            )
        return None
    state = getattr(error, "sqlstate", None) or ""
    where = url.render_as_string(hide_password=True)
    if state.startswith("08") or state.startswith("57P0"):
        return NewsletterError(
            f"cannot reach the database {where}: {cause}",
            hint="check database_url and that the server is running and accepts connections",
        )
    if state.startswith("53"):
        return NewsletterError(
            f"the database server {where} is out of resources: {cause}",
            hint="free disk space or memory on the database server (SQLSTATE "
            f"{state}), then run again: the failed transaction was rolled back",
        )
    if state in ("XX001", "XX002"):
        return NewsletterError(
            f"the database {where} is damaged: {cause}",
            hint=f"restore it from a backup (SQLSTATE {state})",
        )
    if state == "25006":
        return NewsletterError(
            f"the database {where} is read-only: {cause}",
            hint="point database_url at the primary, writable server",
        )
    return None


# The PostgreSQL advisory lock key that serialises migrations (any fixed bigint).
_MIGRATION_LOCK = int.from_bytes(
    hashlib.sha256(b"newsletter-migrate").digest()[:8], "big", signed=True
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # First the busy timeout, so every statement below waits for a lock.
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL: readers (the web server) never block the sender; NORMAL: a commit
    # survives kill -9 (not a power cut), at a fraction of FULL's cost.
    _journal_mode_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _journal_mode_wal(cursor: Any, wait: float = 30.0) -> None:
    """PRAGMA journal_mode=WAL, waiting up to `wait` seconds for the lock it needs.

    Switching a database to WAL can fail at once with "database is locked",
    without SQLite's busy handler, while other processes open the same fresh
    file (twelve commands creating a database at once): it is retried as the
    busy handler would, with growing pauses. A mode SQLite keeps instead
    (":memory:") is accepted; the lock held for longer raises as before.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + wait
    pause = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)  # a lock wait, as sqlite3_busy_timeout's own
        pause = min(pause * 2, 0.1)
