"""The subscriber list as CSV: import (bad rows reported by line) and export."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from newsletter.errors import NewsletterError
from newsletter.model import Edition, SubscriberState
from newsletter.store.subscribers import normalize_email

if TYPE_CHECKING:
    from newsletter.store.subscribers import Subscribers


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


def import_csv(
    subscribers: Subscribers,
    path: str | os.PathLike[str] | TextIO,
    *,
    default_edition: Edition = Edition.KO,
) -> ImportReport:
    """Import email,edition[,name] rows; bad rows are reported by line, good ones kept.

    A header row is optional. Addresses that unsubscribed or bounced are not
    re-subscribed (reported as problems). One transaction. NewsletterError if
    the file cannot be read.
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
    with subscribers.db.engine.begin() as conn:
        for line, row in enumerate(csv.reader(io.StringIO(text)), 1):
            cells = [cell.strip() for cell in row]
            raw = ",".join(row)
            if not any(cells) or cells[0].startswith("#"):
                continue
            if line == 1 and cells[0].lower() in ("email", "e-mail", "address"):
                continue
            if len(cells) > 3:
                problems.append(ImportProblem(line, raw, "too many columns (email,edition,name)"))
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
                    ImportProblem(line, raw, f"duplicate of line {seen[address.lower()]}; skipped")
                )
                continue
            seen[address.lower()] = line
            try:
                _, what = subscribers.add_in(
                    conn, address, edition, name, SubscriberState.ACTIVE, False
                )
            except NewsletterError as exc:
                problems.append(ImportProblem(line, raw, exc.message))
                continue
            counts[what] += 1
    return ImportReport(problems=tuple(sorted(problems, key=lambda p: p.line)), **counts)


def export_csv(
    subscribers: Subscribers, stream: TextIO, state: SubscriberState | str | None = None
) -> int:
    """Write email,edition,name,state rows (with a header); returns the row count."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["email", "edition", "name", "state"])
    rows = subscribers.list(state=state)
    for sub in rows:
        writer.writerow([sub.email, sub.edition.value, sub.name, sub.state.value])
    return len(rows)


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
