"""Typed values that flow between the pipeline's stages.

They are frozen so a rendered edition can be shared by every recipient without
one stage changing what another sees.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from newsletter.papers.links import PaperLink

# Hangul Jamo, Compatibility Jamo and precomposed syllables.
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


class Edition(StrEnum):
    """Which comment(s) a reader gets. Title, authors, abstract, tags: always."""

    KO = "ko"
    EN = "en"
    BOTH = "both"

    @property
    def language(self) -> str:
        """The page language (BCP 47) of this edition; `both` is led by Korean."""
        return "en" if self is Edition.EN else "ko"


ALL_EDITIONS: tuple[Edition, ...] = (Edition.KO, Edition.EN, Edition.BOTH)


class Cadence(StrEnum):
    """How often a subscriber is mailed: each daily issue, or one email a week."""

    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True)
class Entry:
    """One paper in a digest."""

    title: str
    authors: tuple[str, ...]
    abstract: str
    comment_ko: str
    comment_en: str
    tags: tuple[str, ...]
    # Where the entry starts in its file; not part of the value's identity.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Digest:
    """One day's issue: its date (from the content) and its entries.

    `links`: where each entry can be read, in entry order (None: no link),
    attached after parsing by newsletter.papers.attach; empty when no link
    is known. The file never holds links.
    """

    date: dt.date
    entries: tuple[Entry, ...]
    source: str
    links: tuple[PaperLink | None, ...] = ()

    def link(self, index: int) -> PaperLink | None:
        """The link of entry `index` (from 0), or None."""
        return self.links[index] if index < len(self.links) else None

    def with_links(self, links: Sequence[PaperLink | None]) -> Digest:
        """This digest with these links (one per entry; all None: no links)."""
        if len(links) != len(self.entries):
            raise ValueError(f"{len(links)} links for {len(self.entries)} entries")
        return replace(self, links=tuple(links) if any(links) else ())

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag used in the issue, in first-seen order."""
        return tuple(dict.fromkeys(tag for entry in self.entries for tag in entry.tags))


@dataclass(frozen=True)
class DigestLimits:
    """How large a digest may be: `max_bytes` of its file, `max_entries` papers.

    A day's digest is tens of kilobytes and a few dozen entries; far larger
    files are mistakes (a concatenated archive, a stray dump) that would take
    minutes and hundreds of megabytes to publish and mail out in 10 MB emails.
    The config's `limits` section sets them.
    """

    max_bytes: int = 2_000_000
    max_entries: int = 200


@dataclass(frozen=True)
class Problem:
    """A warning or error about a digest file, located by file and line."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.message}"
            if self.line
            else f"{self.file}: {self.message}"
        )


class SubscriberState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    # Reported as spam (an ARF complaint): never mailed again unless an
    # operator reactivates it with --force, or its owner signs up again.
    COMPLAINED = "complained"


# States of someone who left: not mailed, and not re-subscribed by an import.
LEFT_STATES = frozenset(
    {SubscriberState.UNSUBSCRIBED, SubscriberState.BOUNCED, SubscriberState.COMPLAINED}
)


@dataclass(frozen=True)
class Subscriber:
    """One row of the subscriber list. `state_changed_at` (UTC, whole seconds)
    is when `state` last changed; None when unknown."""

    email: str
    edition: Edition
    state: SubscriberState = SubscriberState.ACTIVE
    name: str = ""
    id: int | None = None
    state_changed_at: dt.datetime | None = field(default=None, compare=False)
    # What they asked for now; `cadence_from` is the first day it applies when
    # they changed it (until then `previous_cadence` does: newsletter.cadence).
    cadence: Cadence = Cadence.DAILY
    topics: tuple[str, ...] = ()  # topic keys, sorted; () = every paper
    previous_cadence: Cadence | None = None
    cadence_from: dt.date | None = None


# The days of the week by name, Monday first (datetime's weekday() numbers).
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)

_WEEK = re.compile(r"(\d{4})-?[Ww](\d{2})")


@dataclass(frozen=True, order=True)
class Week:
    """An ISO 8601 week (`2025-W15`): the name of a weekly issue.

    Which days a weekly email holds depends on `schedule.weekly_day`
    (`period`); with the default, Monday, exactly this week's seven days.
    """

    year: int
    number: int

    def __post_init__(self) -> None:
        # Raises ValueError for a week the year does not have (W53 of most years).
        dt.date.fromisocalendar(self.year, self.number, 1)

    @classmethod
    def fromisoformat(cls, text: str) -> Week:
        """`2025-W15` (or `2025W15`, `2025w15`); ValueError for anything else."""
        match = _WEEK.fullmatch(text.strip())
        if not match:
            raise ValueError(f"{text!r} is not an ISO week like 2025-W15")
        try:
            return cls(int(match[1]), int(match[2]))
        except ValueError:
            raise ValueError(f"{text!r} is not a week of {match[1]}") from None

    @classmethod
    def of(cls, date: dt.date) -> Week:
        """The ISO week that holds `date`."""
        year, number, _ = date.isocalendar()
        return cls(year, number)

    def isoformat(self) -> str:
        """`2025-W15` (ISO 8601's week notation), as the ledger keys a weekly issue."""
        return f"{self.year:04d}-W{self.number:02d}"

    def __str__(self) -> str:
        return self.isoformat()

    @property
    def compact(self) -> str:
        """`2025w15`: lowercase, no dash, for VERP tokens and Message-IDs."""
        return f"{self.year:04d}w{self.number:02d}"

    @property
    def monday(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.number, 1)

    def send_day(self, weekly_day: int) -> dt.date:
        """The date this week's weekly email is due (`weekly_day`: 0 = Monday).

        The email holds the seven days before it, and is named by the ISO
        week that holds most of them (the middle day's, four days before):
        with Monday, the next Monday, after all seven days of this week.
        """
        return self.monday + dt.timedelta(days=weekly_day if weekly_day >= 4 else weekly_day + 7)

    def period(self, weekly_day: int) -> tuple[dt.date, ...]:
        """The seven days this week's weekly email holds, oldest first."""
        send = self.send_day(weekly_day)
        return tuple(send - dt.timedelta(days=n) for n in range(7, 0, -1))

    @classmethod
    def holding(cls, date: dt.date, weekly_day: int) -> Week:
        """The weekly issue whose seven days include `date`."""
        # The next weekly day after `date` (1 to 7 days on) is that issue's send day.
        ahead = (weekly_day - date.weekday() - 1) % 7 + 1
        return cls.of(date + dt.timedelta(days=ahead - 4))


# An issue in the ledger: a day (daily emails) or an ISO week (weekly emails).
IssueId = dt.date | Week


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_date(text: str) -> dt.date:
    """A calendar date written `2025-04-04` (ISO 8601 extended form); ValueError otherwise.

    Stricter than `date.fromisoformat`, which since Python 3.11 also reads
    `20250404` and the week date `2025-W14` (as its Monday): a week where a
    day is expected must be an error, never a silently different day.
    """
    if not _DATE.fullmatch(text):
        raise ValueError(f"{text!r} is not a date like 2025-04-04")
    return dt.date.fromisoformat(text)


def parse_issue_id(text: str) -> IssueId:
    """A ledger's issue key: `2025-04-04` or `2025-W15`; ValueError otherwise."""
    if "w" in text.lower():
        return Week.fromisoformat(text)
    return parse_date(text)


def issue_tag(issue: IssueId) -> str:
    """`20250404` or `2025w15`: the issue in Message-IDs and VERP tokens."""
    return issue.compact if isinstance(issue, Week) else f"{issue:%Y%m%d}"


# A topic is a tag as subscribers choose it: compared without case (#LLM is #llm).
_TOPIC = re.compile(r"[\w.\-]+")


def topic_key(tag: str) -> str:
    """The form a tag is stored and compared in: NFC, lower case, no '#'."""
    import unicodedata

    return unicodedata.normalize("NFC", tag.strip().removeprefix("#")).lower()


def parse_topics(text: str | Iterable[str]) -> tuple[str, ...]:
    """Topics from `moe,rl`, `#moe #rl` or a list of tags: sorted keys, each once.

    Empty means every paper. ValueError naming a tag that is not one (tags
    hold letters of any script, digits, '_', '-' and '.', as in digests).
    """
    parts = re.split(r"[\s,]+", text) if isinstance(text, str) else list(text)
    keys = set()
    for part in parts:
        key = topic_key(part)
        if not key:
            continue
        if not _TOPIC.fullmatch(key) or len(key) > 100:
            raise ValueError(
                f"{part.strip()[:60]!r} is not a tag (letters, digits, '_', '-', '.'; "
                "at most 100 characters)"
            )
        keys.add(key)
    return tuple(sorted(keys))


def topics_text(topics: tuple[str, ...]) -> str:
    """Topics as stored and exported: `moe,rl`; "" for every paper."""
    return ",".join(topics)


def entry_matches(entry: Entry, topics: tuple[str, ...] | frozenset[str]) -> bool:
    """Whether a paper is for a reader of `topics` (empty: every paper)."""
    return not topics or any(topic_key(tag) in topics for tag in entry.tags)
