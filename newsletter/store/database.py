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

from newsletter.errors import NewsletterError
from newsletter.model import Week
from newsletter.store.schema import migrate, tables

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
        self.tables = tables()
        try:
            with self.engine.begin() as conn:
                migrate(conn)
        except sa.exc.OperationalError as exc:
            raise NewsletterError(
                f"cannot open the database {self.engine.url.render_as_string()}: {exc.orig}",
                hint="check database_url / paths.state and that the server is running",
            ) from None

    @classmethod
    def open(cls, config: Config) -> Database:
        """The configured database; creates paths.state for the default SQLite file."""
        if config.database_url is None:
            config.paths.state.mkdir(parents=True, exist_ok=True)
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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers (the web server) never block the sender; NORMAL: a commit
    # survives kill -9 (not a power cut), at a fraction of FULL's cost.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
