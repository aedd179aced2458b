"""What to send and to whom: a day's or a week's issue, and its variants.

    Mailing.daily(digest)                      the daily email, to daily subscribers
    Mailing.weekly(week, digests, weekly_day)  the weekly email, to weekly subscribers
    Variants(mailing, groups, editions)        which email each (edition, topics) gets

Rendering stays once per variant, never per recipient: the plan is counted by
(edition, topics) in one query; each group's topics pick papers from the
issue (`Letter.for_topics`), and every distinct (edition, letter) is rendered
once, however many topic sets lead to it. A group whose topics pick no paper
gets no email (and no ledger row): "no matching paper, no email".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.letters import Letter
from newsletter.model import Cadence, Digest, Edition, IssueId, Subscriber, Week

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.mail import EditionEmail
    from newsletter.store.plan import Recipient


@dataclass(frozen=True)
class Mailing:
    """An issue to email: its `letter` (every paper), who it is for (`cadence`,
    as it applies on `decides`: the issue's date, or the first day of a weekly
    period) and the day it is due (lateness counts from there)."""

    letter: Letter
    cadence: Cadence
    decides: dt.date
    due: dt.date

    @classmethod
    def daily(cls, digest: Digest) -> Mailing:
        return cls(Letter.daily(digest), Cadence.DAILY, digest.date, digest.date)

    @classmethod
    def weekly(cls, week: Week, digests: Iterable[Digest], weekly_day: int) -> Mailing | None:
        """The weekly email of `week`; None when none of its days had an issue."""
        letter = Letter.weekly(week, digests, weekly_day)
        if letter is None:
            return None
        return cls(letter, Cadence.WEEKLY, letter.first_day, week.send_day(weekly_day))

    @property
    def issue(self) -> IssueId:
        return self.letter.issue


# A group of the plan: subscribers of one edition with the same topics.
Group = tuple[Edition, tuple[str, ...]]


@dataclass(frozen=True)
class Variant:
    """One distinct email of a send: an edition of a letter; `topics` when the
    letter holds only the papers of readers' topics (its footer says so)."""

    edition: Edition
    letter: Letter
    topics: bool


class Variants:
    """The distinct emails of a send, and which one each group of the plan gets.

    `groups`: subscribers to mail by (edition, topics), as counted by
    `Plan.groups`. `planned` counts by edition those who get an email,
    `filtered` those whose topics picked no paper.
    """

    def __init__(self, mailing: Mailing, groups: Mapping[Group, int]) -> None:
        self.mailing = mailing
        self.variants: list[Variant] = []
        self._index: dict[Variant, int] = {}
        self._groups: dict[Group, int | None] = {}
        self._letters: dict[tuple[str, ...], Letter | None] = {}
        self.planned: dict[Edition, int] = {}
        self.filtered = 0
        for group, count in groups.items():
            index = self.add(group)
            if index is None:
                self.filtered += count
            else:
                self.planned[group[0]] = self.planned.get(group[0], 0) + count

    def letter(self, topics: tuple[str, ...]) -> Letter | None:
        """The letter of a topic set (cached: many groups share topics)."""
        if topics not in self._letters:
            self._letters[topics] = self.mailing.letter.for_topics(topics)
        return self._letters[topics]

    def add(self, group: Group) -> int | None:
        """The variant index of a group, adding its variant if new; None: no paper."""
        if group not in self._groups:
            edition, topics = group
            letter = self.letter(topics)
            index = None
            if letter is not None:
                variant = Variant(edition, letter, bool(topics))
                index = self._index.setdefault(variant, len(self.variants))
                if index == len(self.variants):
                    self.variants.append(variant)
            self._groups[group] = index
        return self._groups[group]

    def of(self, subscriber: Subscriber | Recipient) -> int | None:
        """The variant a subscriber gets; None if their topics pick no paper, or
        they changed edition or topics after the emails were built (the next
        run has them)."""
        group = (subscriber.edition, subscriber.topics)
        if group in self._groups:
            return self._groups[group]
        letter = self.letter(subscriber.topics)
        if letter is None:
            return None
        return self._index.get(Variant(subscriber.edition, letter, bool(subscriber.topics)))

    def is_filtered(self, subscriber: Subscriber | Recipient) -> bool:
        """Whether the subscriber's topics pick no paper of this issue."""
        return self.letter(subscriber.topics) is None

    @property
    def topic_sets(self) -> int:
        """Distinct topic sets among the groups (every paper counts as one)."""
        return len({topics for _edition, topics in self._groups})

    def build(self, config: Config, now: dt.datetime) -> list[EditionEmail]:
        """Each variant rendered, inlined and encoded once, in index order.

        In this process, one after the other: after the first, templates,
        stylesheet and wrapped paragraphs are warm (`mail_layout`), and a
        variant costs ~10 ms; worker processes would each start cold.
        """
        from newsletter.mail import build_email

        return [
            build_email(config, v.letter, v.edition, now=now, topics=v.topics)
            for v in self.variants
        ]

    def in_order(self, editions: Sequence[Edition]) -> dict[Edition, int]:
        """`planned`, in the order of `editions` (the config's), without zeros."""
        return {e: self.planned[e] for e in editions if self.planned.get(e)}
