"""Daily or weekly: which issues a subscriber gets, and when a change of cadence applies.

The rule for a change (by the subscriber on the preferences page, or by
`subscribers update`): **it applies from the next weekly period.** A weekly
period is the seven days one weekly email holds (`Week.period`): with
`schedule.weekly_day: monday`, Monday to Sunday. Until the period in which the
change was made ends, the subscriber keeps the cadence they had:

- daily -> weekly on a Wednesday: the daily emails go on until Sunday, and the
  first weekly email is the one of the next week (no day is mailed twice);
- weekly -> daily on a Wednesday: this week's weekly email still comes (next
  Monday, with all seven days), and daily emails start the Monday after that
  week (no day is skipped).

Changing back within the same period cancels the change. A new subscriber,
or one not yet confirmed, gets the cadence at once: they have had nothing yet.

On the row: `cadence` is what they asked for, `cadence_from` the first day it
applies and `previous_cadence` the one before it (both null once nothing is
pending, or for a first choice). The delivery plan of a day or a week asks
which cadence applies on that day, or on the first day of that week's period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from newsletter.model import WEEKDAYS, Cadence, Subscriber, Week

if TYPE_CHECKING:
    from newsletter.config import Config


@dataclass(frozen=True)
class WeeklySchedule:
    """When weekly periods start: `weekly_day` (0 = Monday) in `zone`."""

    weekly_day: int = 0
    zone: dt.tzinfo = dt.UTC

    @classmethod
    def of(cls, config: Config) -> WeeklySchedule:
        """schedule.weekly_day in site.timezone."""
        return cls(WEEKDAYS.index(config.schedule.weekly_day), ZoneInfo(config.site.timezone))

    def next_period(self, at: dt.datetime) -> dt.date:
        """The first day of the weekly period after the one holding `at` (aware)."""
        today = at.astimezone(self.zone).date()
        return Week.holding(today, self.weekly_day).send_day(self.weekly_day)


def applies_on(subscriber: Subscriber, day: dt.date) -> Cadence:
    """The cadence that decides whether `subscriber` gets the issues of `day`."""
    if subscriber.cadence_from is None or day >= subscriber.cadence_from:
        return subscriber.cadence
    return subscriber.previous_cadence or subscriber.cadence


def change(
    current: Subscriber | None,
    wanted: Cadence,
    at: dt.datetime,
    schedule: WeeklySchedule,
    *,
    at_once: bool = False,
) -> dict[str, Any]:
    """The `cadence`, `previous_cadence` and `cadence_from` column values after a
    request for `wanted` at `at` (see the module doc for the rule).

    `at_once`: the subscriber has had no mail yet (new, or not confirmed): no
    period to finish.
    """
    if current is None or at_once:
        return {"cadence": wanted.value, "previous_cadence": None, "cadence_from": None}
    today = at.astimezone(schedule.zone).date()
    now = applies_on(current, today)
    if wanted is now:
        # Nothing pending (or a pending change taken back).
        return {"cadence": wanted.value, "previous_cadence": None, "cadence_from": None}
    return {
        "cadence": wanted.value,
        "previous_cadence": now.value,
        "cadence_from": schedule.next_period(at),
    }


def describe(subscriber: Subscriber) -> str:
    """`weekly`, or `weekly from 2025-04-14 (daily until then)` while a change waits."""
    if subscriber.cadence_from is None or subscriber.previous_cadence is None:
        return subscriber.cadence.value
    return (
        f"{subscriber.cadence.value} from {subscriber.cadence_from.isoformat()} "
        f"({subscriber.previous_cadence.value} until then)"
    )


def plan_condition(table: Any, cadence: Cadence, day: dt.date) -> Any:
    """SQL: the subscribers whose cadence on `day` is `cadence` (the delivery plan
    of a daily issue of `day`, or of a weekly period that starts on `day`)."""
    import sqlalchemy as sa

    s = table
    return sa.or_(
        sa.and_(
            s.c.cadence == cadence.value,
            sa.or_(s.c.cadence_from.is_(None), s.c.cadence_from <= day),
        ),
        sa.and_(s.c.previous_cadence == cadence.value, s.c.cadence_from > day),
    )
