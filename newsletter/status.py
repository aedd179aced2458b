"""`newsletter status`: what is published, what is due, what was sent, what
bounced, and the paper links cache."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from newsletter.bounces.policy import issue_rates, rate_warnings
from newsletter.model import IssueId
from newsletter.send_times import SendTimes, is_late

if TYPE_CHECKING:
    from newsletter.config import Config

_ISSUE_PAGE = re.compile(r"^[a-z]+/(\d{4}-\d{2}-\d{2})/index\.html$")


def collect_status(config: Config, now: dt.datetime | None = None) -> dict[str, Any]:
    """What `newsletter status` shows, as JSON-ready values.

    `next_send` is the oldest day's issue not yet emailed and not too old
    (`email.max_lateness_days`), `next_weekly_send` the same for the weekly
    email (`{"week": "2025-W15", "at": ...}`, due on `schedule.weekly_day`);
    times are ISO 8601 in `site.timezone`. `now` (aware) defaults to the clock.
    """
    from newsletter.publish import scan
    from newsletter.site import read_manifest
    from newsletter.store import Store

    now = now or dt.datetime.now(config.site.tz)
    published = sorted(
        {
            m.group(1)
            for path in read_manifest(config.paths.public)
            if (m := _ISSUE_PAGE.match(path))
        }
    )
    digests = scan(config).digests
    with Store.open(config) as store:
        times = SendTimes(config)
        today = now.astimezone(times.zone).date()

        def first_to_send(issues: Iterable[IssueId], due_on: Callable[[Any], dt.date]) -> Any:
            """The oldest issue not emailed yet and not too old (the daemon's rule)."""
            return next(
                (
                    issue
                    for issue in issues
                    if not is_late(due_on(issue), today, times.max_lateness_days)
                    and not store.ledger.issue_emailed(issue)
                ),
                None,
            )

        day = first_to_send((d.date for d in digests), lambda date: date)
        week = first_to_send(times.weeks(digests), lambda w: w.send_day(times.weekly_day))
        next_send = {"date": day.isoformat(), "at": times.day(day).isoformat()} if day else None
        next_weekly_send = (
            {"week": week.isoformat(), "at": times.week(week).isoformat()} if week else None
        )
        deliveries = store.ledger.recent_delivery_counts()
        rates = issue_rates(deliveries, store.bounces.counts_by_issue(deliveries))
        links: dict[str, Any] = {"lookup": config.papers.lookup}
        if config.papers.lookup != "off":
            retry = store.links.next_retry()
            links |= {s.value: n for s, n in store.links.counts().items()}
            links["next_retry"] = retry.isoformat() if retry else None
        return {
            "last_published": published[-1] if published else None,
            "next_send": next_send,
            "next_weekly_send": next_weekly_send,
            "deliveries": deliveries,
            "subscribers": dict(sorted(store.subscribers.count().items())),
            "bounces": rates,
            "warnings": rate_warnings(rates),
            # The link cache: papers by lookup status, the earliest retry (UTC).
            "links": links,
        }
