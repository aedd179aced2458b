"""Typed values that flow between the pipeline's stages.

They are frozen so a rendered edition can be shared by every recipient without
one stage changing what another sees.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum

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
    """One day's issue: its date (from the content) and its entries."""

    date: dt.date
    entries: tuple[Entry, ...]
    source: str

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
