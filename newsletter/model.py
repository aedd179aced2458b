"""Typed values that flow between the pipeline's stages.

They are frozen so a rendered edition can be shared by every recipient without
one stage changing what another sees.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
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
