"""The daemon over three simulated weeks in New York, across the March DST change.

A clock we control (one tick per hour, 2025-03-03 to 2025-03-25) drives the
real `Daemon` (the code `newsletter run` ticks), which mails through a real
SMTP server (aiosmtpd). Two weeks have an issue every day but Saturday the 8th;
the third has none. Daily and weekly subscribers, with and without topics, and
two who switch cadence in the middle of the first week, must each get exactly
the emails and the papers the rules give them, at 07:00 New York time: 12:00
UTC before the change of Sunday 9 March, 11:00 UTC after it.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
from zoneinfo import ZoneInfo

import pytest
from smtp_servers import Handler, start_server

from newsletter.cadence import WeeklySchedule
from newsletter.config import config_from_dict
from newsletter.digest import format_digest
from newsletter.model import Cadence, Digest, Entry, Week
from newsletter.scheduler import Daemon
from newsletter.store import Store
from newsletter.store.subscribers import Preferences

NEW_YORK = ZoneInfo("America/New_York")
FIRST = dt.date(2025, 3, 3)  # a Monday; W10 is 3-9 March, W11 10-16, W12 17-23
DAYS = [
    FIRST + dt.timedelta(days=n)
    for n in range(14)
    if FIRST + dt.timedelta(days=n) != dt.date(2025, 3, 8)
]


def paper(day: dt.date, name: str, tags: tuple[str, ...]) -> Entry:
    return Entry(
        title=f"{name} paper of {day.isoformat()}",
        authors=("Minjun Kim", "Anna Smith"),
        abstract=f"We study {name} on {day:%B %d}. The results are in the paper.",
        comment_ko=f"{day.day}일의 {name} 논문입니다.",
        comment_en=f"The {name} paper of day {day.day}.",
        tags=tags,
    )


def digest_for(day: dt.date) -> Digest:
    entries = [paper(day, "LLM", ("llm",))]
    # Mixture-of-experts papers on Mondays, Wednesdays and Fridays; vision otherwise.
    entries.append(
        paper(day, "MoE", ("MoE", "efficiency"))
        if day.weekday() in (0, 2, 4)
        else paper(day, "Vision", ("vision",))
    )
    if day == dt.date(2025, 3, 12):
        entries.append(paper(day, "RL", ("rl", "reasoning")))
    return Digest(day, tuple(entries), f"{day}.txt")


def titles(day: dt.date, topics: tuple[str, ...] = ()) -> list[str]:
    entries = digest_for(day).entries
    return [e.title for e in entries if not topics or {t.lower() for t in e.tags} & set(topics)]


SUBSCRIBERS = {
    # address: (edition, cadence, topics)
    "daily.all@example.org": ("ko", Cadence.DAILY, ()),
    "daily.moe@example.org": ("en", Cadence.DAILY, ("moe",)),
    "weekly.all@example.org": ("both", Cadence.WEEKLY, ()),
    "weekly.moe@example.org": ("ko", Cadence.WEEKLY, ("moe",)),
    "weekly.rl@example.org": ("en", Cadence.WEEKLY, ("rl",)),
    "to.weekly@example.org": ("ko", Cadence.DAILY, ()),  # daily -> weekly on Wed 5 March
    "to.daily@example.org": ("en", Cadence.WEEKLY, ()),  # weekly -> daily on Wed 5 March
}


def expected() -> dict[str, list[tuple[str, dt.datetime, list[str]]]]:
    """Per address: (issue, local send time, titles in order) of every email it must get."""

    def at(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(7), tzinfo=NEW_YORK)

    def daily(days, topics=()):
        return [(d.isoformat(), at(d), titles(d, topics)) for d in days if titles(d, topics)]

    def weekly(week: Week, topics=()):
        days = [d for d in reversed(DAYS) if d in week.period(0)]  # newest day first
        found = [t for d in days for t in titles(d, topics)]
        return [(week.isoformat(), at(week.send_day(0)), found)] if found else []

    w10, w11 = Week(2025, 10), Week(2025, 11)
    return {
        "daily.all@example.org": daily(DAYS),
        "daily.moe@example.org": daily(DAYS, ("moe",)),
        "weekly.all@example.org": weekly(w10) + weekly(w11),
        "weekly.moe@example.org": weekly(w10, ("moe",)) + weekly(w11, ("moe",)),
        "weekly.rl@example.org": weekly(w10, ("rl",)) + weekly(w11, ("rl",)),
        # Daily until the end of the week of the change (Sunday 9th), then weekly
        # from the next week: neither a day twice nor a day missed.
        "to.weekly@example.org": daily([d for d in DAYS if d <= dt.date(2025, 3, 9)]) + weekly(w11),
        # This week still weekly (sent Monday 10th), daily from Monday 10th.
        "to.daily@example.org": weekly(w10) + daily([d for d in DAYS if d >= dt.date(2025, 3, 10)]),
    }


def received(handler: Handler) -> dict[str, list[tuple[str, dt.datetime, list[str]]]]:
    """Per address: (issue, local time of the Date header, paper titles) in arrival order."""
    out: dict[str, list[tuple[str, dt.datetime, list[str]]]] = {}
    for message in handler.messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        issue = re.match(r"<(\d{8}|\d{4}w\d{2})\.", parsed["Message-ID"])[1]
        issue = (
            f"{issue[:4]}-{issue[4:6]}-{issue[6:]}"
            if "w" not in issue
            else f"{issue[:4]}-W{issue[5:]}"
        )
        when = email.utils.parsedate_to_datetime(parsed["Date"]).astimezone(NEW_YORK)
        text = parsed.get_body(("plain",)).get_content().replace("\r\n", "\n")
        found = re.findall(r"^\d+\. (.+ paper of \d{4}-\d{2}-\d{2})$", text, re.M)
        for recipient in message.recipients:
            out.setdefault(recipient, []).append((issue, when, found))
    return out


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "fortnight-secret-0123456789")
    (tmp_path / "digests").mkdir()
    for day in DAYS:
        (tmp_path / "digests" / f"{day}.txt").write_text(
            format_digest(digest_for(day)), encoding="utf-8"
        )
    handler = Handler()
    with start_server(handler) as server:
        config = config_from_dict(
            {
                "site": {"base_url": "https://example.org/papers/", "timezone": "America/New_York"},
                "paths": {"digests": "digests", "public": "public", "state": "state"},
                "email": {
                    "transport": "smtp",
                    "from": "ML Papers <papers@example.org>",
                    "postal_address": "1 Example Road",
                    "smtp": {
                        "host": server.host,
                        "port": server.port,
                        "security": "none",
                        "connections": 1,
                    },
                },
                "schedule": {"send_time": "07:00", "weekly_day": "monday", "settle_seconds": 0},
                "papers": {"lookup": "off"},
            },
            tmp_path,
        )
        start = dt.datetime(2025, 3, 2, 0, 0, tzinfo=dt.UTC)
        with Store.open(config) as store:
            for address, (edition, cadence, topics) in SUBSCRIBERS.items():
                wanted = Preferences(cadence=cadence, topics=topics)
                store.subscribers.add(address, edition, at=start, preferences=wanted)
        yield config, handler


def test_a_fortnight_of_daily_and_weekly_mail_across_dst(world):
    config, handler = world
    clock = [dt.datetime(2025, 3, 2, 12, 0, tzinfo=dt.UTC)]
    daemon = Daemon(config, now=lambda: clock[0])
    schedule = WeeklySchedule.of(config)
    switch = dt.datetime(2025, 3, 5, 12, 0, tzinfo=NEW_YORK)  # Wednesday noon
    switched = False
    end = dt.datetime(2025, 3, 25, 12, 0, tzinfo=dt.UTC)  # past the empty week's Monday
    while clock[0] <= end:
        if not switched and clock[0] >= switch:
            with Store.open(config) as store:
                for address, cadence in (
                    ("to.weekly@example.org", Cadence.WEEKLY),
                    ("to.daily@example.org", Cadence.DAILY),
                ):
                    changed = store.subscribers.set_preferences(
                        address, Preferences(cadence=cadence, schedule=schedule), at=clock[0]
                    )
                    assert changed.cadence_from == dt.date(2025, 3, 10)
            switched = True
        daemon.tick()
        clock[0] += dt.timedelta(hours=1)

    got = received(handler)
    want = expected()

    def by_time(mails):  # a daily and a weekly email may share a minute
        return sorted(mails, key=lambda mail: (mail[1], mail[0]))

    for address in SUBSCRIBERS:
        assert by_time(got.get(address, [])) == by_time(want[address]), address
    # Every email at 07:00 New York time: 12:00 UTC in EST, 11:00 UTC in EDT.
    times = {
        when.astimezone(dt.UTC).strftime("%d %H:%M")
        for mails in got.values()
        for _, when, _ in mails
    }
    assert "03 12:00" in times and "10 11:00" in times and "17 11:00" in times
    # The empty week (17-23 March) sent no weekly email; the weekly pages the
    # emails link to are published.
    assert not any(issue == "2025-W12" for mails in got.values() for issue, _, _ in mails)
    for edition in ("ko", "en", "both"):
        for week in ("2025-W10", "2025-W11"):
            page = config.paths.public / edition / "weekly" / week / "index.html"
            assert page.exists(), page
    weekly = next(m for m in handler.messages if m.recipients == ["weekly.moe@example.org"])
    parsed = email.message_from_bytes(weekly.data, policy=email.policy.default)
    # The subject counts only the reader's papers; the email groups them by day.
    assert parsed["Subject"] == "[ML Papers] 주간 · 2025년 3월 3일~9일 · 논문 3편"
    text = parsed.get_body(("plain",)).get_content()
    assert "https://example.org/papers/ko/weekly/2025-W10/" in text
    headings = re.findall(r"^=+\r?\n(.+?)\r?$", text, re.M)
    assert headings == ["2025년 3월 7일", "2025년 3월 5일", "2025년 3월 3일"]
    with Store.open(config) as store:
        assert store.ledger.issue_emailed(Week(2025, 10)) and store.ledger.issue_emailed(
            Week(2025, 11)
        )
        assert not store.ledger.issue_emailed(Week(2025, 12))
