"""Every table and every schema change, in order: the one list a new table joins.

The tables are SQLAlchemy Core `Table`s, defined once per process (they hold no
connection). A database records its version in `schema_version`; opening it
runs the migrations after that version, in one transaction.

To add a table: define it in `_define` and name it in `Tables`, then append a
`Migration` that creates it (or changes an existing one). Never edit a released
migration: the version of a database is the number of migrations it has run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True)
class Tables:
    """The tables, by name (see `_define` for their columns)."""

    metadata: sa.MetaData
    schema_version: sa.Table
    subscribers: sa.Table
    deliveries: sa.Table
    issues: sa.Table
    bounce_events: sa.Table
    paper_links: sa.Table


@dataclass(frozen=True)
class Migration:
    """One step: `apply(tables, connection)` inside the migrating transaction."""

    what: str
    apply: Callable[[Tables, Any], None]


def _create(*names: str) -> Callable[[Tables, Any], None]:
    """A migration step that creates the named tables."""

    def apply(tables: Tables, conn: Any) -> None:
        tables.metadata.create_all(conn, tables=[getattr(tables, name) for name in names])

    return apply


def _add_state_changed_at(tables: Tables, conn: Any) -> None:
    """subscribers.state_changed_at, filled from updated_at for the rows there are.

    Idempotent: a database created by this program's migration 1 already has
    the column (migration 1 creates the table as it is defined today).
    """
    import sqlalchemy as sa

    s = tables.subscribers
    columns = {c["name"] for c in sa.inspect(conn).get_columns("subscribers")}
    if "state_changed_at" not in columns:
        kind = s.c.state_changed_at.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE subscribers ADD COLUMN state_changed_at {kind}")
    conn.execute(
        s.update().where(s.c.state_changed_at.is_(None)).values(state_changed_at=s.c.updated_at)
    )


def _add_preferences(tables: Tables, conn: Any) -> None:
    """subscribers.cadence, topics, previous_cadence, cadence_from: everyone is
    daily with every topic, as before. Idempotent like `_add_state_changed_at`."""
    import sqlalchemy as sa

    s = tables.subscribers
    columns = {c["name"] for c in sa.inspect(conn).get_columns("subscribers")}
    for name, default in (
        ("cadence", "'daily'"),
        ("topics", "''"),
        ("previous_cadence", None),
        ("cadence_from", None),
    ):
        if name in columns:
            continue
        kind = s.c[name].type.compile(dialect=conn.dialect)
        extra = f" NOT NULL DEFAULT {default}" if default else ""
        conn.exec_driver_sql(f"ALTER TABLE subscribers ADD COLUMN {name} {kind}{extra}")


# Migration N takes a database from version N-1 to N. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    Migration("subscribers and the delivery ledger", _create("subscribers", "deliveries")),
    Migration("issues: the daemon's send-once mark", _create("issues")),
    Migration("bounce_events: bounces, complaints, unsubscribes", _create("bounce_events")),
    Migration("subscribers.state_changed_at: when the state last changed", _add_state_changed_at),
    Migration("subscribers: cadence (daily, weekly) and topics", _add_preferences),
    Migration("paper_links: the arXiv lookup cache", _create("paper_links")),
)
SCHEMA_VERSION = len(MIGRATIONS)


@functools.cache
def tables() -> Tables:
    """The table definitions (built on first use: SQLAlchemy is a heavy import)."""
    import sqlalchemy as sa

    return _define(sa)


def _define(sa: Any) -> Tables:
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
        # When `state` last changed (joined, confirmed, left, bounced): a
        # confirmation link issued before it is stale. Null only in rows written
        # by hand; migration 4 fills it from updated_at.
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=True),
        # Daily or weekly, and the topics (tags, sorted, comma-separated; "" for
        # every paper). A change of cadence applies from `cadence_from`; until
        # then `previous_cadence` does (newsletter/cadence.py). Migration 5.
        sa.Column("cadence", sa.String(8), nullable=False, default="daily", server_default="daily"),
        sa.Column("topics", sa.String(2000), nullable=False, default="", server_default=""),
        sa.Column("previous_cadence", sa.String(8), nullable=True),
        sa.Column("cadence_from", sa.Date, nullable=True),
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
    # What happened after (or at) the send: hard and soft bounces, complaints,
    # mailto unsubscribes, reactivations (newsletter/store/bounces.py). `ref`
    # makes a report count once, however often it arrives.
    bounce_events = sa.Table(
        "bounce_events",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("issue_date", sa.String(10), nullable=True),
        sa.Column("edition", sa.String(8), nullable=True),
        sa.Column("status", sa.String(32), nullable=False, default=""),
        sa.Column("diagnostic", sa.String(1000), nullable=False, default=""),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False, unique=True),
        sa.Index("ix_bounce_events_issue", "issue_date"),
        sa.Index("ix_bounce_events_email", "email_key"),
        sa.Index("ix_bounce_events_at", "at"),
    )
    # Each paper's arXiv lookup, keyed by papers.matching.paper_key (the
    # normalised title and family names): found and not_found are final until
    # a refresh; failed keeps the error and when to retry (newsletter/store/links.py).
    paper_links = sa.Table(
        "paper_links",
        metadata,
        sa.Column("paper_key", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=True),
        sa.Column("arxiv_id", sa.String(64), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False, default=""),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retry_after", sa.DateTime(timezone=True), nullable=True),
        sa.Index("ix_paper_links_retry", "status", "retry_after"),
    )
    return Tables(metadata, version, subscribers, deliveries, issues, bounce_events, paper_links)


def migrate(conn: Any) -> None:
    """Bring the database on `conn` (in a transaction, under the caller's lock:
    `Database._migrate`) to SCHEMA_VERSION. Idempotent: tables are created only
    if missing, and `schema_version` ends with exactly one row (a database
    left with several by an older, unlocked start is repaired: the highest wins).

    Raises NewsletterError if the database is newer than this program.
    """
    import sqlalchemy as sa

    t = tables()
    t.schema_version.create(conn, checkfirst=True)
    current, rows = conn.execute(
        sa.select(sa.func.max(t.schema_version.c.version), sa.func.count())
    ).one()
    if rows != 1:
        current = current or 0
        conn.execute(t.schema_version.delete())
        conn.execute(t.schema_version.insert().values(version=current))
    if current > SCHEMA_VERSION:
        raise NewsletterError(
            f"the database has schema version {current}, newer than this program "
            f"({SCHEMA_VERSION})",
            hint="upgrade newsletter",
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1].apply(t, conn)
        conn.execute(t.schema_version.update().values(version=version))
