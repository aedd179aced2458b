"""The subscriber list as CSV: export, and import (bad rows reported by line).

An export imports as it is: the header names the columns, and every column of
the table travels (address, edition, name, state, hard bounces, the times
the row was created, last updated and last changed state, in ISO 8601 UTC,
then cadence, topics, and a change of cadence still waiting for its period:
the cadence until then and the day it applies from). So
`subscribers export > list.csv` then `subscribers import list.csv` into a fresh
database gives back the same list, which is how a list moves from SQLite to
PostgreSQL. A hand-written file may have just `email,edition[,name]`.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Cadence, Edition, SubscriberState, parse_date, parse_topics
from newsletter.store.database import now
from newsletter.store.subscribers import (
    History,
    Preferences,
    as_utc,
    new_row,
    normalize_email,
)

if TYPE_CHECKING:
    from newsletter.cadence import WeeklySchedule
    from newsletter.store.subscribers import Subscribers

# The columns of an export, in order; a file without a header row has them in
# this order too (any number of them from the left).
COLUMNS = (
    "email",
    "edition",
    "name",
    "state",
    "hard_bounces",
    "created_at",
    "updated_at",
    "state_changed_at",
    "cadence",
    "topics",
    "previous_cadence",
    "cadence_from",
)
_ALIASES = {"e-mail": "email", "address": "email"}
_TIMES = ("created_at", "updated_at", "state_changed_at")
# Rows looked up and inserted per statement (bound parameters stay well under limits).
_CHUNK = 500


@dataclass(frozen=True)
class ImportProblem:
    """A row that was not imported: its line number (1-based), its text, why."""

    line: int
    text: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason} ({self.text!r})"


@dataclass(frozen=True)
class ImportReport:
    """Counts of rows by what they did, and the rows that were not imported (by line)."""

    added: int
    updated: int
    unchanged: int
    problems: tuple[ImportProblem, ...]
    # The addresses of the rows imported (added, updated or unchanged), in file order.
    addresses: tuple[str, ...] = ()


class BadCell(Exception):
    """A cell of a CSV row that cannot be used (the message says which and why)."""


def import_csv(
    subscribers: Subscribers,
    path: str | os.PathLike[str] | TextIO,
    *,
    default_edition: Edition = Edition.KO,
    schedule: WeeklySchedule | None = None,
) -> ImportReport:
    """Import rows of the export's columns; bad rows are reported by line, good ones kept.

    A header row names the columns (any of `COLUMNS`, in any order); without
    one the columns are `COLUMNS` in order, `email,edition[,name]` at least.
    A new address gets the row's state (active if there is none) and its
    counts and times. An existing address keeps its state, except that a row
    saying unsubscribed, bounced or complained records that departure; an
    address that left (`LEFT_STATES`) is never re-subscribed (reported as a
    problem).
    A row's cadence and topics (columns `cadence`, `topics`) apply to a new
    address as they are; for an address already there a new cadence follows
    the rule of `newsletter.cadence` (`schedule`: when weekly periods start).
    One transaction. NewsletterError if the file cannot be read or its header
    names a column we do not know.
    """
    problems: list[ImportProblem] = []
    if isinstance(path, (str, os.PathLike)):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise NewsletterError(f"cannot read {path}: {exc.strerror or exc}") from None
        lines: Iterable[str] = list(decoded_lines(data.splitlines(keepends=True), problems))
    else:
        lines = path
    rows = [
        dataclasses.replace(r, preferences=dataclasses.replace(r.preferences, schedule=schedule))
        for r in _good_rows(lines, path, default_edition, problems)
    ]
    when = now()
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    # New addresses (all of them, into a fresh database) are inserted 500 at a
    # time; only addresses already there go through the one-by-one rules of add_in.
    with subscribers.db.engine.begin() as conn:
        # Which are there, asked before inserting anything: the rows of the
        # file are distinct, and PostgreSQL plans these lookups on the table as
        # it was (a plan made for an empty table would scan what we insert).
        known: set[str] = set()
        for start in range(0, len(rows), _CHUNK):
            keys = [r.address.lower() for r in rows[start : start + _CHUNK]]
            known |= subscribers.existing_keys(conn, keys)
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            fresh = [
                new_row(
                    r.address,
                    r.edition,
                    r.name,
                    r.state or SubscriberState.ACTIVE,
                    when,
                    r.history,
                    r.preferences,
                )
                for r in chunk
                if r.address.lower() not in known
            ]
            if fresh:
                conn.execute(subscribers.table.insert(), fresh)
                counts["added"] += len(fresh)
            for r in chunk:
                if r.address.lower() not in known:
                    continue
                try:
                    _, what = subscribers.add_in(
                        conn,
                        r.address,
                        r.edition,
                        r.name,
                        r.state or SubscriberState.ACTIVE,
                        False,
                        history=r.history,
                        preferences=r.preferences,
                    )
                except NewsletterError as exc:
                    problems.append(ImportProblem(r.line, r.raw, exc.message))
                    continue
                counts[what] += 1
    bad = {problem.line for problem in problems}
    return ImportReport(
        problems=tuple(sorted(problems, key=lambda p: p.line)),
        addresses=tuple(r.address for r in rows if r.line not in bad),
        **counts,
    )


@dataclass(frozen=True)
class _Row:
    """A row that parsed: where it was, and what it says."""

    line: int
    raw: str
    address: str
    edition: Edition
    name: str
    state: SubscriberState | None
    history: History
    preferences: Preferences


def _good_rows(
    lines: Iterable[str], path: object, default_edition: Edition, problems: list[ImportProblem]
) -> Iterator[_Row]:
    """The rows that parse, first of each address; the others go to `problems`."""
    seen: dict[str, int] = {}
    columns: tuple[str, ...] = COLUMNS
    reader = csv.reader(lines)
    for row in reader:
        line = reader.line_num
        cells = [cell.strip() for cell in row]
        raw = ",".join(row)
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line == 1 and _ALIASES.get(cells[0].lower(), cells[0].lower()) == "email":
            columns = _header(cells, path)
            continue
        if len(cells) > len(columns):
            problems.append(ImportProblem(line, raw, f"too many columns ({','.join(columns)})"))
            continue
        values = dict(zip(columns, cells, strict=False))
        try:
            address, edition, state, history = _parse(values, default_edition)
            preferences = _preferences(values)
        except BadCell as exc:
            problems.append(ImportProblem(line, raw, str(exc)))
            continue
        except NewsletterError as exc:
            problems.append(ImportProblem(line, raw, exc.message))
            continue
        if address.lower() in seen:
            reason = f"duplicate of line {seen[address.lower()]}; skipped"
            problems.append(ImportProblem(line, raw, reason))
            continue
        seen[address.lower()] = line
        name = values.get("name", "")
        yield _Row(line, raw, address, edition, name, state, history, preferences)


def _header(cells: list[str], path: object) -> tuple[str, ...]:
    names = tuple(_ALIASES.get(cell.lower(), cell.lower()) for cell in cells)
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise NewsletterError(
            f"{path}:1: unknown column {unknown[0]!r}",
            hint=f"the columns are {', '.join(COLUMNS)} (as 'subscribers export' writes them)",
        )
    return names


def _parse(
    values: dict[str, str], default_edition: Edition
) -> tuple[str, Edition, SubscriberState | None, History]:
    """(address, edition, state or None, history) of one row; BadCell or NewsletterError."""
    address = normalize_email(values.get("email", ""))
    edition_text = values.get("edition", "")
    try:
        edition = Edition(edition_text.lower()) if edition_text else default_edition
    except ValueError:
        raise BadCell(f"unknown edition {edition_text!r} (ko, en, both)") from None
    state_text = values.get("state", "")
    try:
        state = SubscriberState(state_text.lower()) if state_text else None
    except ValueError:
        known = ", ".join(s.value for s in SubscriberState)
        raise BadCell(f"unknown state {state_text!r} ({known})") from None
    bounces = values.get("hard_bounces", "") or "0"
    if not bounces.isdigit():
        raise BadCell(f"hard_bounces {bounces!r} is not a whole number")
    times = {name: parse_time(name, values.get(name, "")) for name in _TIMES}
    previous = _cadence(values, "previous_cadence")
    since_text = values.get("cadence_from", "")
    try:
        since = parse_date(since_text) if since_text else None
    except ValueError:
        raise BadCell(f"cadence_from {since_text!r} is not a date like 2025-04-14") from None
    history = History(int(bounces), previous_cadence=previous, cadence_from=since, **times)
    return address, edition, state, history


def _cadence(values: dict[str, str], column: str) -> Cadence | None:
    text = values.get(column, "")
    try:
        return Cadence(text.lower()) if text else None
    except ValueError:
        raise BadCell(f"unknown {column} {text!r} (daily, weekly)") from None


def _preferences(values: dict[str, str]) -> Preferences:
    """Cadence and topics of a row; a column left out (or empty) leaves them as they are."""
    try:
        topics = parse_topics(values["topics"]) if "topics" in values else None
    except ValueError as exc:
        raise BadCell(f"topics: {exc}") from None
    return Preferences(cadence=_cadence(values, "cadence"), topics=topics)


def parse_time(name: str, text: str) -> dt.datetime | None:
    """An ISO 8601 time from column `name` (naive means UTC); None if empty; BadCell."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadCell(
            f"{name} {text!r} is not a date and time like 2025-04-04T07:00:00+00:00"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def export_csv(
    subscribers: Subscribers, stream: TextIO, state: SubscriberState | str | None = None
) -> int:
    """Write every column of every subscriber (optionally of one state), with a header.

    Columns: `COLUMNS`; times in ISO 8601 UTC. Rows in the order they joined,
    read a page at a time. Returns the row count.
    """
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    count = 0
    for row in _rows(subscribers, state):
        writer.writerow(
            [
                row.email,
                row.edition,
                row.name,
                row.state,
                row.hard_bounces,
                *(iso_time(getattr(row, name)) for name in _TIMES),
                row.cadence,
                row.topics,
                row.previous_cadence or "",
                row.cadence_from.isoformat() if row.cadence_from else "",
            ]
        )
        count += 1
    return count


def _rows(subscribers: Subscribers, state: SubscriberState | str | None) -> Iterator[Any]:
    """The table's rows by id, 2,000 at a time (keyset pages: memory stays flat)."""
    import sqlalchemy as sa

    t = subscribers.table
    last = 0
    while True:
        query = sa.select(t).where(t.c.id > last).order_by(t.c.id).limit(2000)
        if state is not None:
            query = query.where(t.c.state == SubscriberState(state).value)
        with subscribers.db.engine.connect() as conn:
            rows = list(conn.execute(query))
        yield from rows
        if len(rows) < 2000:
            return
        last = rows[-1].id


def iso_time(value: dt.datetime | None) -> str:
    """A time as the exports write it: ISO 8601 UTC; "" for None."""
    utc = as_utc(value)
    return utc.isoformat() if utc else ""


def decoded_lines(lines: Iterable[bytes], problems: list[ImportProblem]) -> Iterator[str]:
    """The UTF-8 text of a CSV file's lines (a byte-order mark is dropped); a line
    that is not UTF-8 is reported and left blank, so the good lines keep their
    numbers and are still imported. Streams: one line in memory at a time."""
    for number, raw in enumerate(lines, 1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = raw.decode("utf-8", "replace").strip()
            problems.append(ImportProblem(number, shown, "not UTF-8 text (save the file as UTF-8)"))
            yield "\n"
