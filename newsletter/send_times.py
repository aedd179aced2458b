"""When an issue's email is due: send-time arithmetic, no state and no I/O.

A day's issue is due at `schedule.send_time` on its date; a week's (the seven
days before `schedule.weekly_day`) at `send_time` on that weekday. Both in the
site's zone (`site.timezone`), and not once they are more than
`email.max_lateness_days` days old.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from newsletter.model import WEEKDAYS, Digest, IssueId, Week

if TYPE_CHECKING:
    from newsletter.config import Config


def send_datetime(date: dt.date, send_time: dt.time, zone: ZoneInfo) -> dt.datetime:
    """When the issue of `date` is due, as an aware datetime that really exists.

    A wall time skipped by a DST change (02:30 on a spring-forward night) is
    moved forward by the gap; a repeated one (fall-back) means its first
    occurrence. Round-tripping through UTC does both.
    """
    local = dt.datetime.combine(date, send_time, tzinfo=zone)
    return local.astimezone(dt.UTC).astimezone(zone)


def is_late(date: dt.date, today: dt.date, max_lateness_days: int) -> bool:
    """Whether the issue of `date` is more than `max_lateness_days` days old on `today`."""
    return (today - date).days > max_lateness_days


class SendTimes:
    """The send times of a config's schedule, and which issues of a list are due.

    Every method takes the digests (any order) and `now` (an aware datetime);
    weeks are those that hold an issue (`Week.holding`).
    """

    def __init__(self, config: Config) -> None:
        self.zone = config.site.tz
        self.clock = config.schedule.send_clock
        self.weekly_day = WEEKDAYS.index(config.schedule.weekly_day)
        self.max_lateness_days = config.email.max_lateness_days

    def day(self, date: dt.date) -> dt.datetime:
        """When the daily email of `date` is due."""
        return send_datetime(date, self.clock, self.zone)

    def week(self, week: Week) -> dt.datetime:
        """When the weekly email of `week` is due: send_time on its weekly day."""
        return self.day(week.send_day(self.weekly_day))

    def weeks(self, digests: Sequence[Digest]) -> list[Week]:
        """The weeks that have an issue, oldest first."""
        return sorted({Week.holding(d.date, self.weekly_day) for d in digests})

    def due(self, digests: Sequence[Digest], now: dt.datetime) -> list[Digest]:
        """Issues whose send time has passed and that are not too old to email."""
        today = now.astimezone(self.zone).date()
        return [
            d
            for d in digests
            if self.day(d.date) <= now and not is_late(d.date, today, self.max_lateness_days)
        ]

    def due_weeks(self, digests: Sequence[Digest], now: dt.datetime) -> list[Week]:
        """Weeks whose weekly email is due and not too old (counted from its day)."""
        today = now.astimezone(self.zone).date()
        return [
            week
            for week in self.weeks(digests)
            if self.week(week) <= now
            and not is_late(week.send_day(self.weekly_day), today, self.max_lateness_days)
        ]

    def next_send(
        self, digests: Sequence[Digest], now: dt.datetime
    ) -> tuple[IssueId, dt.datetime] | None:
        """The first send time after `now`, daily or weekly, and its issue (None: none)."""
        upcoming: list[tuple[dt.datetime, IssueId]] = [(self.day(d.date), d.date) for d in digests]
        upcoming += [(self.week(week), week) for week in self.weeks(digests)]
        future = sorted((item for item in upcoming if item[0] > now), key=lambda item: item[0])
        return (future[0][1], future[0][0]) if future else None
