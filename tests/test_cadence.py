"""Cadence and topics: the store's rule for a change, the CLI, CSV, variants, weekly sends.

The daemon over simulated weeks is in test_cadence_daemon.py, the browser in
test_web_browser.py.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import os
import re
import subprocess
import time

import pytest
from helpers import SAMPLE_DIGESTS, run_cli
from smtp_servers import Handler, start_server
from test_kill import kill_and_settle, smtp_project
from test_web import server

from newsletter.cadence import WeeklySchedule, applies_on
from newsletter.config import config_from_dict
from newsletter.deliver.variants import Mailing, Variants
from newsletter.digest import read_digest
from newsletter.letters import Letter
from newsletter.model import Cadence, Edition, SubscriberState, Week
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.store.subscriber_csv import export_csv, import_csv
from newsletter.store.subscribers import Preferences

__all__ = ["server"]  # the web service fixture, used by name

SEOUL = WeeklySchedule(0, dt.timezone(dt.timedelta(hours=9)))
APRIL = read_digest(SAMPLE_DIGESTS / "2025-04-04.txt").digest
MAY = read_digest(SAMPLE_DIGESTS / "2025-05-19.txt").digest


# --- weeks -----------------------------------------------------------------------------


@pytest.mark.parametrize("day", range(7))
def test_every_day_belongs_to_exactly_one_weekly_email(day):
    """The weekly periods tile the calendar for every schedule.weekly_day."""
    seen: dict[dt.date, Week] = {}
    for number in range(1, 53):
        week = Week(2025, number)
        period = week.period(day)
        assert len(period) == 7 and period[-1] + dt.timedelta(days=1) == week.send_day(day)
        assert week.send_day(day).weekday() == day
        for date in period:
            assert date not in seen
            seen[date] = week
            assert Week.holding(date, day) == week
    # Named by the ISO week holding most of its days (with Monday: all seven).
    assert Week(2025, 15).period(0) == tuple(dt.date(2025, 4, n) for n in range(7, 14))


def test_week_names_are_checked():
    assert str(Week.fromisoformat("2025w15")) == "2025-W15"
    for bad in ("2025-15", "2025-W54", "2021-W53", "W15"):
        with pytest.raises(ValueError):
            Week.fromisoformat(bad)
    assert str(Week.fromisoformat("2020-W53")) == "2020-W53"


# --- the rule for a change of cadence ------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with Store(Database(f"sqlite:///{tmp_path / 'db.sqlite'}")) as store:
        yield store


def at(day: int, hour: int = 12) -> dt.datetime:
    return dt.datetime(2025, 4, day, hour, tzinfo=SEOUL.zone)


def test_a_change_of_cadence_applies_from_the_next_weekly_period(store):
    weekly = Preferences(Cadence.WEEKLY, schedule=SEOUL)
    daily = Preferences(Cadence.DAILY, schedule=SEOUL)
    store.subscribers.add("a@example.org", "ko", at=at(1))
    sub = store.subscribers.set_preferences("a@example.org", weekly, at=at(9))  # a Wednesday
    assert (sub.cadence, sub.previous_cadence, sub.cadence_from) == (
        Cadence.WEEKLY,
        Cadence.DAILY,
        dt.date(2025, 4, 14),
    )
    assert applies_on(sub, dt.date(2025, 4, 13)) is Cadence.DAILY
    assert applies_on(sub, dt.date(2025, 4, 14)) is Cadence.WEEKLY
    # Taken back within the week: nothing changes at all.
    back = store.subscribers.set_preferences("a@example.org", daily, at=at(10))
    assert (back.cadence, back.previous_cadence, back.cadence_from) == (Cadence.DAILY, None, None)
    # Monday morning (in Seoul), before the 07:00 sends, is the new week already.
    late = store.subscribers.set_preferences("a@example.org", weekly, at=at(14, 6))
    assert late.cadence_from == dt.date(2025, 4, 21)
    # Not yet confirmed: no period to finish.
    store.subscribers.add("p@example.org", "ko", state=SubscriberState.PENDING, at=at(9))
    pending = store.subscribers.set_preferences("p@example.org", weekly, at=at(9))
    assert (pending.cadence, pending.cadence_from) == (Cadence.WEEKLY, None)


def test_plans_follow_the_rule(store):
    """Who is in the plan of each daily issue and each weekly one, around a switch."""
    store.subscribers.add("d2w@example.org", "ko", at=at(1))
    store.subscribers.add(
        "w2d@example.org", "ko", at=at(1), preferences=Preferences(Cadence.WEEKLY)
    )
    for address, cadence in (
        ("d2w@example.org", Cadence.WEEKLY),
        ("w2d@example.org", Cadence.DAILY),
    ):
        store.subscribers.set_preferences(address, Preferences(cadence, schedule=SEOUL), at=at(9))

    def daily(day: int) -> set[str]:
        todo, _ = store.plan.todo(dt.date(2025, 4, day), list(Edition))
        return {s.email for s in todo}

    def weekly(number: int) -> set[str]:
        week = Week(2025, number)
        todo, _ = store.plan.todo(
            week, list(Edition), cadence=Cadence.WEEKLY, day=week.period(0)[0]
        )
        return {s.email for s in todo}

    assert daily(13) == {"d2w@example.org"} and daily(14) == {"w2d@example.org"}
    assert weekly(15) == {"w2d@example.org"} and weekly(16) == {"d2w@example.org"}


# --- CLI and CSV -------------------------------------------------------------------------


def test_cli_add_update_list_and_csv_round_trip(tmp_path):
    (tmp_path / "config.yaml").write_text(
        f"paths:\n  digests: {SAMPLE_DIGESTS}\n  state: state\n", encoding="utf-8"
    )
    config = str(tmp_path / "config.yaml")
    added = run_cli(
        "--config",
        config,
        "subscribers",
        "add",
        "a@example.org",
        "--cadence",
        "weekly",
        "--topics",
        "MoE, #rl,추론",
    )
    assert added.returncode == 0, added.stderr
    assert "weekly, topics moe,rl,추론" in added.stdout
    run_cli("--config", config, "subscribers", "add", "b@example.org", "--edition", "en")
    updated = run_cli(
        "--config",
        config,
        "subscribers",
        "update",
        "b@example.org",
        "--cadence",
        "weekly",
        "--topics",
        "rl",
    )
    assert updated.returncode == 0, updated.stderr
    assert re.search(
        r"weekly from \d{4}-\d{2}-\d{2} \(daily until then\), topics rl", updated.stdout
    )
    bad = run_cli("--config", config, "subscribers", "update", "b@example.org", "--topics", "a/b")
    assert bad.returncode == 2 and "is not a tag" in bad.stderr and "Traceback" not in bad.stderr
    nothing = run_cli("--config", config, "subscribers", "update", "b@example.org")
    assert nothing.returncode == 2
    ghost = run_cli(
        "--config", config, "subscribers", "update", "ghost@example.org", "--cadence", "daily"
    )
    assert ghost.returncode == 1 and "not a subscriber" in ghost.stderr
    listed = run_cli("--config", config, "subscribers", "list", "--json")
    rows = {row["email"]: row for row in __import__("json").loads(listed.stdout)}
    assert rows["a@example.org"]["topics"] == ["moe", "rl", "추론"]
    assert rows["b@example.org"]["cadence"] == "weekly" and rows["b@example.org"]["cadence_from"]

    exported = run_cli("--config", config, "subscribers", "export")
    assert exported.stdout.splitlines()[0].endswith(",cadence,topics,previous_cadence,cadence_from")
    (tmp_path / "list.csv").write_text(exported.stdout, encoding="utf-8")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.yaml").write_text(
        f"paths:\n  digests: {SAMPLE_DIGESTS}\n  state: state\n", encoding="utf-8"
    )
    imported = run_cli(
        "--config", str(fresh / "config.yaml"), "subscribers", "import", str(tmp_path / "list.csv")
    )
    assert imported.returncode == 0, imported.stdout + imported.stderr
    again = run_cli("--config", str(fresh / "config.yaml"), "subscribers", "export")
    assert again.stdout == exported.stdout  # the same list, a waiting change included


def test_csv_import_reports_bad_cadence_and_topics(store):
    report = import_csv(
        store.subscribers,
        io.StringIO(
            "email,edition,cadence,topics\n"
            'a@example.org,ko,weekly,"moe,rl"\n'
            "b@example.org,ko,hourly,\n"
            "c@example.org,ko,daily,bad/tag\n"
            "d@example.org,en,,\n"
        ),
    )
    assert report.added == 2
    assert [(p.line, p.reason.split(" ")[0]) for p in report.problems] == [
        (3, "unknown"),
        (4, "topics:"),
    ]
    a, d = store.subscribers.get("a@example.org"), store.subscribers.get("d@example.org")
    assert (a.cadence, a.topics) == (Cadence.WEEKLY, ("moe", "rl"))
    assert (d.cadence, d.topics) == (Cadence.DAILY, ())
    out = io.StringIO()
    export_csv(store.subscribers, out)
    assert (
        "a@example.org,ko,,active,0," in out.getvalue() and ',weekly,"moe,rl",,' in out.getvalue()
    )


# --- variants -------------------------------------------------------------------------------


def test_variants_are_distinct_emails_not_topic_sets():
    """Topic sets that pick the same papers share one rendered email."""
    mailing = Mailing.daily(APRIL)  # tags: math corpus pretraining | efficiency | ... rl | ...
    groups = {
        (Edition.KO, ()): 5,
        (Edition.KO, ("rl",)): 3,
        (Edition.KO, ("reward-model",)): 2,  # the same paper as #rl
        (Edition.KO, ("inference-time-scaling", "rl")): 1,  # and again
        (Edition.KO, ("vision",)): 4,  # nothing that day
        (Edition.EN, ("rl",)): 1,
    }
    variants = Variants(mailing, groups)
    assert len(variants.variants) == 3  # ko all, ko the #rl paper, en the #rl paper
    assert variants.filtered == 4 and variants.planned == {Edition.KO: 11, Edition.EN: 1}
    assert variants.topic_sets == 5


def test_a_topic_email_counts_only_its_papers(tmp_path):
    from newsletter.mail import build_email

    config = config_from_dict({}, tmp_path)
    letter = Letter.daily(APRIL).for_topics(("rl", "math"))
    assert letter is not None and letter.count == 2
    built = build_email(config, letter, Edition.EN, topics=True)
    assert built.subject.endswith("· 2 papers")
    data = built.personalise("r@example.org", "", "tok")
    text = (
        email.message_from_bytes(data, policy=email.policy.default)
        .get_body(("plain",))
        .get_content()
    )
    assert "Only papers on the topics you chose" in text
    assert Letter.daily(APRIL).for_topics(("vision",)) is None


def test_a_weekly_email_of_forty_papers_fits(tmp_path):
    """The size guarantee holds for a week: shortened, then the rest linked."""
    from big_digest import big_digest

    from newsletter.mail import build_email
    from newsletter.mime import EIGHT_BIT

    monday = dt.date(2025, 6, 2)
    days = [
        __import__("dataclasses").replace(
            big_digest(papers=8, seed=n), date=monday + dt.timedelta(days=n)
        )
        for n in range(5)
    ]
    config = config_from_dict({}, tmp_path)
    letter = Letter.weekly(Week(2025, 23), days, 0)
    assert letter is not None and letter.count == 40
    built = build_email(config, letter, Edition.BOTH)
    assert built.shortened
    for wire in (built.eightbit, built.sevenbit):
        assert wire.html_bytes <= config.email.max_bytes
    assert EIGHT_BIT in built.eightbit.encodings
    html = (
        email.message_from_bytes(
            built.personalise("r@example.org", "", "t"), policy=email.policy.default
        )
        .get_body(("html",))
        .get_content()
    )
    if built.eightbit.cut.papers is not None:  # the rest behind a link to the weekly page
        assert "/both/weekly/2025-W23/#2025-06-" in html


# --- a weekly send: exactly once, through kill -9 ------------------------------------------------


def weekly_project(tmp_path, smtp, subscribers: int) -> list[str]:
    """test_kill's project, with weekly readers of assorted topics and one daily reader."""

    topics = [(), ("rl",), ("reasoning", "agent"), ("vision",)]
    args = smtp_project(
        tmp_path,
        smtp,
        subscribers,
        preferences=lambda i: Preferences(Cadence.WEEKLY, topics[i % 4]),
        command=("--week", "2025-W21", "--force"),
    )
    with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
        store.subscribers.add("daily@example.org", "ko")  # not a weekly reader
    return args


def test_kill_during_a_weekly_send_then_rerun_gives_each_one_copy(tmp_path):
    handler = Handler(delay=0.04)
    count = 100
    with start_server(handler) as smtp:
        args = weekly_project(tmp_path, smtp, count)
        env = os.environ | {"NEWSLETTER_SECRET": "weekly-kill-secret"}
        first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(handler.messages) < 25 and first.poll() is None:
            assert time.monotonic() < deadline, "the sender never got going"
            time.sleep(0.005)
        kill_and_settle(first, handler)  # handler.messages is final from here
        accepted_at_kill = set(handler.count_by_recipient())
        assert 0 < len(accepted_at_kill) < count, "kill did not land mid-send"
        with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
            recorded = {
                d.email for d in store.ledger.deliveries_for(Week(2025, 21)) if d.state == "sent"
            }
        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        third = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert "0 sent" in third.stdout

    counts = handler.count_by_recipient()
    # reader i with topics vision (i % 4 == 3) has no paper that week.
    wanted = {f"reader{i}@example.org" for i in range(count) if i % 4 != 3}
    assert set(counts) == wanted  # and never the daily reader
    in_flight = {a for a, n in counts.items() if n > 1}
    # Only messages accepted but not yet recorded at the kill may come twice.
    assert in_flight <= accepted_at_kill - recorded and len(in_flight) <= 6, in_flight
    for message in handler.messages:
        parsed = email.message_from_bytes(message.data, policy=email.policy.default)
        assert parsed["Message-ID"].startswith("<2025w21.")
        assert "Weekly" in parsed["Subject"] or "주간" in parsed["Subject"]


# --- the sign-up form and the preferences page, over HTTP ------------------------------------


def test_sign_up_with_cadence_and_topics_and_change_them(server):
    """The choices travel through double opt-in; the POSTs need their CSRF token."""
    from test_web import SECRET, csrf_of, link_in

    from newsletter.tokens import UNSUBSCRIBE, sign_token

    server.clock[0] = dt.datetime(2025, 5, 20, 3, 0, tzinfo=dt.UTC)
    client = server.client
    form = client.get("subscribe")
    offered = re.findall(r'name="topic" value="([^"]+)"', form.text)
    assert offered[:3] == ["rl", "reasoning", "reward-model"]  # most used first
    assert "(4)" in form.text  # with the number of papers
    fields = {"csrf": csrf_of(form.text), "email": "t@example.com", "edition": "en"}
    empty = client.post("subscribe", fields | {"cadence": "weekly", "scope": "some"})
    assert empty.status == 400 and "at least one tag" in empty.text
    fields["csrf"] = csrf_of(empty.text)
    body = "&".join(
        f"{k}={v}" for k, v in (fields | {"cadence": "weekly", "scope": "some"}).items()
    )
    body += "&topic=rl&topic=%EC%B6%94%EB%A1%A0"  # rl and 추론 (not in use lately)
    reply = client.post("subscribe", body.encode())
    assert reply.status == 200, reply.text
    with server.store() as store:
        pending = store.subscribers.get("t@example.com")
    assert (pending.cadence, pending.topics) == (Cadence.WEEKLY, ("rl", "추론"))
    assert client.confirm(link_in(server.confirmation("t@example.com"), "confirm")).status == 200
    token = sign_token(SECRET.encode(), UNSUBSCRIBE, "t@example.com")
    page = client.get(f"preferences?token={token}")
    # A chosen tag out of use is still there, checked.
    assert re.search(r'value="추론" checked> #추론 <span class="gone">', page.text)
    with server.store() as store:
        assert store.subscribers.get("t@example.com").state.value == "active"
    forged = client.post(f"preferences?token={token}", {"edition": "en", "cadence": "daily"})
    assert forged.status == 403
    saved = client.post(
        f"preferences?token={token}",
        {"csrf": csrf_of(page.text), "edition": "ko", "cadence": "daily", "scope": "all"},
    )
    assert saved.status == 200 and "Daily from 2025-05-26, every paper" in saved.text
    with server.store() as store:
        now = store.subscribers.get("t@example.com")
    # Confirmed on Tuesday 20 May and back to daily: from the next Monday.
    assert (now.edition, now.cadence, now.topics) == (Edition.KO, Cadence.DAILY, ())
    assert now.cadence_from == dt.date(2025, 5, 26)
