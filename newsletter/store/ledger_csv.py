"""The delivery ledger as CSV: export and import, for moving to another database.

A list moved without its ledger would be mailed again: the new database would
not know who already got the recent issues, and the daemon would send them
once more. So the move carries both files (see the README): the subscribers
(`subscriber_csv`) and this one, one row per ledger row plus one row per
send-once mark of a date that has no ledger rows. Times are ISO 8601 UTC.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Edition, parse_issue_id
from newsletter.store.ledger import DeliveryState
from newsletter.store.subscriber_csv import (
    BadCell,
    ImportProblem,
    decoded_lines,
    iso_time,
    parse_time,
)
from newsletter.store.subscribers import normalize_email, stamp

if TYPE_CHECKING:
    from newsletter.store.database import Database

COLUMNS = (
    "issue_date",
    "edition",
    "email",
    "state",
    "attempts",
    "last_reply",
    "created_at",
    "updated_at",
    "sent_at",
    "issue_emailed_at",
)
_STATES = (DeliveryState.PENDING, DeliveryState.SENT, DeliveryState.FAILED)
_FINAL = (DeliveryState.SENT, DeliveryState.FAILED)
# Rows per INSERT / UPDATE statement.
_CHUNK = 1000


def export_ledger(db: Database, stream: TextIO) -> int:
    """Write every ledger row and every send-once mark, with a header; returns the rows."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    marks = _marks(db)
    dated = set()
    count = 0
    for row in _ledger_rows(db):
        dated.add(row.issue_date)
        writer.writerow(
            [
                row.issue_date,
                row.edition,
                row.email,
                row.state,
                row.attempts,
                row.last_reply,
                iso_time(row.created_at),
                iso_time(row.updated_at),
                iso_time(row.sent_at),
                iso_time(marks.get(row.issue_date)),
            ]
        )
        count += 1
    for date, emailed in sorted(marks.items()):
        if date not in dated:  # a mark alone: the issue went out to nobody
            writer.writerow([date, "", "", "", "", "", "", "", "", iso_time(emailed)])
            count += 1
    return count


def import_ledger(db: Database, path: str | os.PathLike[str]) -> tuple[int, list[ImportProblem]]:
    """Add the file's ledger rows and send-once marks; returns (rows added, problems).

    A row already in the database stays as it is, unless it is pending and the
    file's row is final (sent or failed): nothing that was sent becomes
    sendable again. The file is streamed and written `_CHUNK` rows per
    statement (INSERT ... ON CONFLICT DO NOTHING), in one transaction: millions
    of rows take minutes, not hours. NewsletterError if the file cannot be
    read, its header is not the export's, or the database is neither SQLite
    nor PostgreSQL.
    """
    problems: list[ImportProblem] = []
    try:
        handle = Path(path).open("rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise NewsletterError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(decoded_lines(handle, problems))
        header = next(reader, [])
        if tuple(cell.strip().lower() for cell in header) != COLUMNS:
            raise NewsletterError(
                f"{path}:1: not a ledger export (its header is not {','.join(COLUMNS)})",
                hint="make it with 'newsletter ledger export'",
            )
        marks: dict[str, dt.datetime] = {}
        batch: list[dict[str, Any]] = []
        now = stamp()
        with db.engine.begin() as conn:
            before = _count(db, conn)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                values = dict(zip(COLUMNS, (cell.strip() for cell in row), strict=False))
                try:
                    parsed = _parse_row(values, marks, now)
                except (BadCell, ValueError) as exc:
                    problems.append(ImportProblem(reader.line_num, ",".join(row), str(exc)))
                    continue
                except NewsletterError as exc:
                    problems.append(ImportProblem(reader.line_num, ",".join(row), exc.message))
                    continue
                if parsed is not None:
                    batch.append(parsed)
                if len(batch) >= _CHUNK:
                    _write(db, conn, batch)
                    batch = []
            _write(db, conn, batch)
            _mark(db, conn, marks)
            added = _count(db, conn) - before
    return added, sorted(problems, key=lambda p: p.line)


def _parse_row(
    values: dict[str, str], marks: dict[str, dt.datetime], now: dt.datetime
) -> dict[str, Any] | None:
    """The ledger row of one CSV row (None for a mark alone); its mark goes to `marks`."""
    # A day or an ISO week (the weekly email): each keeps its own key.
    date = parse_issue_id(values.get("issue_date", "")).isoformat()
    emailed = parse_time("issue_emailed_at", values.get("issue_emailed_at", ""))
    if emailed is not None:
        marks.setdefault(date, stamp(emailed))
    if not values.get("email"):
        return None  # a mark alone
    address = normalize_email(values["email"])
    state = values.get("state", "")
    if state not in _STATES:
        raise BadCell(f"unknown state {state!r} ({', '.join(_STATES)})")
    return {
        "issue_date": date,
        "edition": Edition(values.get("edition", "").lower()).value,
        "email_key": address.lower(),
        "email": address,
        "state": state,
        "attempts": int(values.get("attempts") or 0),
        "last_reply": values.get("last_reply", "")[:500],
        "created_at": stamp(parse_time("created_at", values.get("created_at", "")) or now),
        "updated_at": stamp(parse_time("updated_at", values.get("updated_at", "")) or now),
        "sent_at": _stamped(parse_time("sent_at", values.get("sent_at", ""))),
    }


def _write(db: Database, conn: Any, rows: list[dict[str, Any]]) -> None:
    """Insert the rows that are not there; a pending row there takes a final one's place."""
    import sqlalchemy as sa

    if not rows:
        return
    d = db.tables.deliveries
    conn.execute(_insert_new(conn, d), rows)
    final = [
        {f"b_{key}": value for key, value in row.items()} for row in rows if row["state"] in _FINAL
    ]
    if final:
        update = (
            d.update()
            .where(d.c.issue_date == sa.bindparam("b_issue_date"))
            .where(d.c.edition == sa.bindparam("b_edition"))
            .where(d.c.email_key == sa.bindparam("b_email_key"))
            .where(d.c.state == DeliveryState.PENDING)
            .values(
                {
                    c: sa.bindparam(f"b_{c}")
                    for c in ("state", "attempts", "last_reply", "updated_at", "sent_at")
                }
            )
        )
        conn.execute(update, final)


def _insert_new(conn: Any, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in this database's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise NewsletterError(
            f"ledger import supports SQLite and PostgreSQL, not {conn.dialect.name}",
            hint="move the ledger into one of those",
        )
    return insert(table).on_conflict_do_nothing()


def _mark(db: Database, conn: Any, marks: dict[str, dt.datetime]) -> None:
    import sqlalchemy as sa

    issues = db.tables.issues
    for date, emailed in sorted(marks.items()):
        known = sa.select(issues.c.issue_date).where(issues.c.issue_date == date)
        if conn.execute(known).first() is None:
            conn.execute(issues.insert().values(issue_date=date, emailed_at=emailed))


def _count(db: Database, conn: Any) -> int:
    import sqlalchemy as sa

    return int(conn.execute(sa.select(sa.func.count()).select_from(db.tables.deliveries)).scalar())


def _stamped(value: dt.datetime | None) -> dt.datetime | None:
    return stamp(value) if value else None


def _marks(db: Database) -> dict[str, dt.datetime]:
    import sqlalchemy as sa

    issues = db.tables.issues
    with db.engine.connect() as conn:
        return {date: when for date, when in conn.execute(sa.select(issues))}


def _ledger_rows(db: Database) -> Iterator[Any]:
    """Every ledger row by date, edition and address, 5,000 at a time (keyset pages)."""
    import sqlalchemy as sa

    d = db.tables.deliveries
    order = (d.c.issue_date, d.c.edition, d.c.email_key)
    after: tuple[str, str, str] | None = None
    while True:
        query = sa.select(d).order_by(*order).limit(5000)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(*after))
        with db.engine.connect() as conn:
            rows = list(conn.execute(query))
        yield from rows
        if len(rows) < 5000:
            return
        last = rows[-1]
        after = (last.issue_date, last.edition, last.email_key)
