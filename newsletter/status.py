"""`newsletter status`: what is published, what is due, what was sent, what
bounced, and the paper links cache."""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any

from newsletter.bounces.policy import issue_rates, rate_warnings
from newsletter.model import WEEKDAYS, Week
from newsletter.send_times import is_late, send_datetime

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
        next_send = None
        for digest in digests:
            when = send_datetime(digest.date, config.schedule.send_clock, config.site.tz)
            too_old = is_late(digest.date, now.date(), config.email.max_lateness_days)
            if too_old or store.ledger.issue_emailed(digest.date):
                continue
            next_send = {"date": digest.date.isoformat(), "at": when.isoformat()}
            break
        next_weekly_send = None
        weekly_day = WEEKDAYS.index(config.schedule.weekly_day)
        for week in sorted({Week.holding(d.date, weekly_day) for d in digests}):
            day = week.send_day(weekly_day)
            too_old = is_late(day, now.date(), config.email.max_lateness_days)
            if too_old or store.ledger.issue_emailed(week):
                continue
            when = send_datetime(day, config.schedule.send_clock, config.site.tz)
            next_weekly_send = {"week": week.isoformat(), "at": when.isoformat()}
            break
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
