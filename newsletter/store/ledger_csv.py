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
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Edition
from newsletter.store.ledger import DeliveryState
from newsletter.store.subscriber_csv import (
    BadCell,
    ImportProblem,
    decode_lines,
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
    sendable again. One transaction. NewsletterError if the file cannot be
    read or its header is not the export's.
    """
    problems: list[ImportProblem] = []
    try:
        text = decode_lines(Path(path).read_bytes(), problems)
    except OSError as exc:
        raise NewsletterError(f"cannot read {path}: {exc.strerror or exc}") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if tuple(cell.strip().lower() for cell in header) != COLUMNS:
        raise NewsletterError(
            f"{path}:1: not a ledger export (its header is not {','.join(COLUMNS)})",
            hint="make it with 'newsletter ledger export'",
        )
    added = 0
    with db.engine.begin() as conn:
        for line, row in enumerate(reader, 2):
            if not any(cell.strip() for cell in row):
                continue
            values = dict(zip(COLUMNS, (cell.strip() for cell in row), strict=False))
            try:
                added += _import_row(db, conn, values)
            except (BadCell, ValueError) as exc:
                problems.append(ImportProblem(line, ",".join(row), str(exc)))
            except NewsletterError as exc:
                problems.append(ImportProblem(line, ",".join(row), exc.message))
    return added, sorted(problems, key=lambda p: p.line)


def _import_row(db: Database, conn: Any, values: dict[str, str]) -> int:
    """One row into the ledger (and its date's mark); 1 if a ledger row was added."""
    import sqlalchemy as sa

    date = dt.date.fromisoformat(values.get("issue_date", "")).isoformat()
    emailed = parse_time("issue_emailed_at", values.get("issue_emailed_at", ""))
    if emailed is not None:
        issues = db.tables.issues
        known = sa.select(issues.c.issue_date).where(issues.c.issue_date == date)
        if conn.execute(known).first() is None:
            conn.execute(issues.insert().values(issue_date=date, emailed_at=stamp(emailed)))
    if not values.get("email"):
        return 0  # a mark alone
    edition = Edition(values.get("edition", "").lower()).value
    address = normalize_email(values["email"])
    state = values.get("state", "")
    if state not in _STATES:
        raise BadCell(f"unknown state {state!r} ({', '.join(_STATES)})")
    now = stamp()
    row = {
        "issue_date": date,
        "edition": edition,
        "email_key": address.lower(),
        "email": address,
        "state": state,
        "attempts": int(values.get("attempts") or 0),
        "last_reply": values.get("last_reply", "")[:500],
        "created_at": stamp(parse_time("created_at", values.get("created_at", "")) or now),
        "updated_at": stamp(parse_time("updated_at", values.get("updated_at", "")) or now),
        "sent_at": _stamped(parse_time("sent_at", values.get("sent_at", ""))),
    }
    d = db.tables.deliveries
    key = (d.c.issue_date == date, d.c.edition == edition, d.c.email_key == address.lower())
    existing = conn.execute(sa.select(d.c.state).where(*key)).scalar()
    if existing is None:
        conn.execute(d.insert().values(**row))
        return 1
    if existing not in _FINAL and state in _FINAL:
        conn.execute(d.update().where(*key).values(**row))
    return 0


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
