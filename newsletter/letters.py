"""What one email holds: a day's issue or a week's, every paper or a reader's topics.

    Letter.daily(digest)                       today's daily email
    Letter.weekly(week, digests, weekly_day)   the weekly email: the seven days
                                               before its send day, newest first
    letter.for_topics(("moe", "rl"))           only the papers with one of those
                                               tags; None when none has one

A `Letter` is a value: two readers whose topics pick the same papers get equal
letters, so the deliverer renders each distinct email once (a variant) however
many topic sets lead to it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.model import Digest, Entry, IssueId, Week, entry_matches


@dataclass(frozen=True)
class Day:
    """One day's papers in a letter: its digest and the positions of the papers
    shown (every paper, or those of a reader's topics)."""

    digest: Digest
    picked: tuple[int, ...]

    @property
    def date(self) -> dt.date:
        return self.digest.date

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self.digest.entries[index] for index in self.picked)


@dataclass(frozen=True)
class Letter:
    """One email's content: the issue it belongs to (a date, or an ISO week for
    the weekly email) and its days, newest first (a daily letter has one)."""

    issue: IssueId
    days: tuple[Day, ...]
    # The seven days a weekly letter covers (oldest, newest), even if some had no issue.
    span: tuple[dt.date, dt.date] | None = None

    @classmethod
    def daily(cls, digest: Digest) -> Letter:
        """Every paper of one day's issue."""
        return cls(digest.date, (Day(digest, tuple(range(len(digest.entries)))),))

    @classmethod
    def weekly(cls, week: Week, digests: Iterable[Digest], weekly_day: int) -> Letter | None:
        """Every paper of the issues of `week`'s seven days (`Week.period`),
        newest day first; None if no issue fell in them ("no issue, no email")."""
        period = week.period(weekly_day)
        days = sorted(
            (d for d in digests if period[0] <= d.date <= period[-1] and d.entries),
            key=lambda d: d.date,
            reverse=True,
        )
        if not days:
            return None
        picked = tuple(Day(d, tuple(range(len(d.entries)))) for d in days)
        return cls(week, picked, (period[0], period[-1]))

    @property
    def is_weekly(self) -> bool:
        return isinstance(self.issue, Week)

    @property
    def papers(self) -> list[tuple[Day, int]]:
        """Every paper shown, in order: (its day, its position in that day's digest)."""
        return [(day, index) for day in self.days for index in day.picked]

    @property
    def count(self) -> int:
        return sum(len(day.picked) for day in self.days)

    @property
    def first_day(self) -> dt.date:
        """The first day the letter covers (a weekly letter: its period's)."""
        return self.span[0] if self.span else self.days[-1].date

    def for_topics(self, topics: tuple[str, ...] | frozenset[str]) -> Letter | None:
        """Only the papers with at least one of `topics` (empty: all of them);
        None when not one paper has any (that reader gets no email)."""
        if not topics:
            return self
        days = []
        for day in self.days:
            entries = day.digest.entries
            picked = tuple(i for i in day.picked if entry_matches(entries[i], topics))
            if picked:
                days.append(Day(day.digest, picked))
        return Letter(self.issue, tuple(days), self.span) if days else None
