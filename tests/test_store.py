"""The database: subscribers and the delivery ledger, on a real SQLite file
(and PostgreSQL when `pg_ctl`/`initdb` and psycopg are available)."""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from smtp_servers import free_port, mail_config

from newsletter.errors import NewsletterError
from newsletter.model import Edition, SubscriberState
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.store.ledger import DeliveryState, Outcome
from newsletter.store.schema import SCHEMA_VERSION
from newsletter.store.subscriber_csv import export_csv, import_csv

DATE = dt.date(2025, 4, 4)


def _postgres_url():
    """Start a throw-away PostgreSQL server; yield its URL (skip if unavailable)."""
    initdb = shutil.which("initdb") or (
        shutil.which("pg_ctl") and str(Path(shutil.which("pg_ctl")).with_name("initdb"))
    )
    if not initdb or not Path(initdb).exists():
        pytest.skip("PostgreSQL (initdb/pg_ctl) not installed")
    pytest.importorskip("psycopg")
    folder = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
    data = folder / "data"
    port = free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run_as,
                str(Path(initdb).with_name("pg_ctl")),
                "-D",
                str(data),
                "-w",
                "-l",
                str(folder / "log"),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=''",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, KeyError, LookupError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot start PostgreSQL: {exc}")
    url = f"postgresql+psycopg://postgres@/postgres?host={folder}&port={port}"
    return url, run_as, initdb, data, folder


@pytest.fixture(scope="module")
def mail_pg_url():
    url, run_as, initdb, data, folder = _postgres_url()
    yield url
    subprocess.run(
        [
            *run_as,
            str(Path(initdb).with_name("pg_ctl")),
            "-D",
            str(data),
            "-m",
            "immediate",
            "stop",
        ],
        capture_output=True,
    )
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state' / 'test.db'}"
        (tmp_path / "state").mkdir()
    else:
        url = request.getfixturevalue("mail_pg_url")
    store = Store(Database(url))
    if request.param == "postgresql":  # one server for the module: start clean
        with store.db.engine.begin() as conn:
            conn.execute(store.db.tables.bounce_events.delete())
            conn.execute(store.db.tables.deliveries.delete())
            conn.execute(store.db.tables.subscribers.delete())
    yield store
    store.close()


def test_open_creates_state_folder_and_wal(tmp_path):
    config = mail_config(tmp_path)
    with Store.open(config) as store:
        assert (tmp_path / "state" / "newsletter.db").exists()
        with store.db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    with Store.open(config) as again, again.db.engine.connect() as conn:  # idempotent migrations
        version = conn.exec_driver_sql("SELECT version FROM schema_version").scalar()
        assert version == SCHEMA_VERSION


def test_migrates_a_version_1_database_keeping_its_data(tmp_path):
    config = mail_config(tmp_path)
    with Store.open(config) as store:
        store.subscribers.add("old@example.org", "en")
        with store.db.engine.begin() as conn:  # as version 1 left it: no issues table
            conn.exec_driver_sql("DROP TABLE issues")
            conn.exec_driver_sql("UPDATE schema_version SET version = 1")
    with Store.open(config) as store:
        assert store.subscribers.get("old@example.org").edition is Edition.EN
        assert not store.ledger.issue_emailed(dt.date(2025, 4, 4))
        store.ledger.mark_issue_emailed(dt.date(2025, 4, 4))
        store.ledger.mark_issue_emailed(dt.date(2025, 4, 4))  # idempotent
        assert store.ledger.issue_emailed(dt.date(2025, 4, 4))


def test_add_normalises_and_is_unique(store):
    sub = store.subscribers.add("  Kim@EXAMPLE.org ", "en", "김철수")
    assert sub.email == "Kim@example.org" and sub.edition is Edition.EN
    assert sub.state is SubscriberState.ACTIVE and sub.name == "김철수"
    again = store.subscribers.add("kim@example.org", "both")
    assert again.id == sub.id and again.edition is Edition.BOTH and again.name == "김철수"
    assert len(store.subscribers.list()) == 1
    assert store.subscribers.get("KIM@example.org").email == "Kim@example.org"
    assert store.subscribers.get("nobody@example.org") is None
    with pytest.raises(NewsletterError, match="not a valid email"):
        store.subscribers.add("not-an-address")


def test_remove_marks_unsubscribed_and_readd_needs_reactivate(store):
    store.subscribers.add("a@example.org")
    assert store.subscribers.remove("a@example.org").state is SubscriberState.UNSUBSCRIBED
    assert store.subscribers.get("a@example.org") is not None  # history stays
    with pytest.raises(NewsletterError, match="unsubscribed"):
        store.subscribers.add("a@example.org")
    assert store.subscribers.add("a@example.org", reactivate=True).state is SubscriberState.ACTIVE
    with pytest.raises(NewsletterError, match="not a subscriber"):
        store.subscribers.remove("ghost@example.org")


def test_set_state_and_edition_and_list_filters(store):
    store.subscribers.add("a@example.org", "ko")
    store.subscribers.add("b@example.org", "en")
    store.subscribers.set_state("b@example.org", "pending")
    store.subscribers.set_edition("a@example.org", Edition.BOTH)
    assert [s.email for s in store.subscribers.list(state="active")] == ["a@example.org"]
    assert [s.email for s in store.subscribers.list(edition="both")] == ["a@example.org"]
    assert store.subscribers.count() == {"active": 1, "pending": 1}


def test_import_reports_bad_rows_by_line_and_keeps_good(store, tmp_path):
    store.subscribers.add("gone@example.org")
    store.subscribers.remove("gone@example.org")
    csv_file = tmp_path / "subs.csv"
    csv_file.write_text(
        "email,edition,name\n"  # 1 header
        "a@example.org,ko,Kim\n"  # 2 ok
        "not-an-email,en,\n"  # 3 bad address
        "b@example.org,fr\n"  # 4 bad edition
        "\n"  # 5 blank: ignored
        "c@example.org\n"  # 6 ok, default edition
        "A@example.org,en\n"  # 7 duplicate of 2
        "gone@example.org,ko\n"  # 8 unsubscribed: not re-added
        'd@example.org,both,"Lee, Young"\n'  # 9 ok, comma in name
        "e@example.org,ko,x,extra\n",  # 10 too many columns
        encoding="utf-8",
    )
    report = import_csv(store.subscribers, csv_file)
    assert (report.added, report.updated) == (3, 0)
    assert [p.line for p in report.problems] == [3, 4, 7, 8, 10]
    reasons = [p.reason for p in report.problems]
    assert "not a valid email" in reasons[0]
    assert "unknown edition 'fr'" in reasons[1]
    assert "duplicate of line 2" in reasons[2]
    assert "unsubscribed" in reasons[3]
    assert "too many columns" in reasons[4]
    assert store.subscribers.get("d@example.org").name == "Lee, Young"
    assert store.subscribers.get("c@example.org").edition is Edition.KO
    # Without a header row, and importing again updates instead of duplicating.
    report = import_csv(store.subscribers, io.StringIO("a@example.org,en\nf@example.org,both\n"))
    assert (report.added, report.updated, report.problems) == (1, 1, ())


def test_export_round_trips(store, tmp_path):
    store.subscribers.add("a@example.org", "ko", "김철수")
    store.subscribers.add("b@example.org", "en")
    out = io.StringIO()
    assert export_csv(store.subscribers, out) == 2
    assert out.getvalue().splitlines() == [
        "email,edition,name,state",
        "a@example.org,ko,김철수,active",
        "b@example.org,en,,active",
    ]


def test_ledger_plan_start_record(store):
    for i in range(5):
        store.subscribers.add(f"u{i}@example.org", "ko" if i % 2 else "en")
    store.subscribers.set_state("u4@example.org", "unsubscribed")
    todo, skipped = store.ledger.delivery_plan(DATE, [Edition.KO, Edition.EN])
    assert [s.email for s in todo] == [f"u{i}@example.org" for i in range(4)] and skipped == 0
    store.ledger.start_deliveries(DATE, todo)
    store.ledger.start_deliveries(DATE, todo)  # idempotent
    assert store.ledger.delivery_counts(DATE) == {"pending": 4}
    store.ledger.record(
        DATE,
        [
            Outcome(Edition.EN, "u0@example.org", DeliveryState.SENT, "250 ok"),
            Outcome(Edition.KO, "u1@example.org", DeliveryState.FAILED, "550 no", True),
            Outcome(Edition.EN, "u2@example.org", DeliveryState.PENDING, "451 later"),
        ],
        bounce_limit=1,
    )
    assert store.ledger.delivery_counts(DATE) == {"sent": 1, "failed": 1, "pending": 2}
    assert store.subscribers.get("u1@example.org").state is SubscriberState.BOUNCED
    rows = {d.email: d for d in store.ledger.deliveries_for(DATE)}
    assert rows["u0@example.org"].sent_at is not None and rows["u0@example.org"].attempts == 1
    assert (
        rows["u2@example.org"].last_reply == "451 later" and rows["u2@example.org"].sent_at is None
    )
    todo, skipped = store.ledger.delivery_plan(DATE, list(Edition))
    assert [s.email for s in todo] == ["u2@example.org", "u3@example.org"]
    assert skipped == 1  # u0 sent; u1 is bounced now (not active)
    # A subscriber who switched edition after getting today's issue is skipped too.
    store.subscribers.set_edition("u0@example.org", "ko")
    assert "u0@example.org" not in [
        s.email for s in store.ledger.delivery_plan(DATE, list(Edition))[0]
    ]


def test_record_batch_is_fast(tmp_path):
    store = Store(Database(f"sqlite:///{tmp_path / 'fast.db'}"))
    with store.db.engine.begin() as conn:
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            store.db.tables.subscribers.insert(),
            [
                {
                    "email": f"u{i}@example.org",
                    "email_key": f"u{i}@example.org",
                    "edition": "ko",
                    "name": "",
                    "state": "active",
                    "hard_bounces": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(20_000)
            ],
        )
    start = time.perf_counter()
    todo, _ = store.ledger.delivery_plan(DATE, list(Edition))
    store.ledger.start_deliveries(DATE, todo)
    outcomes = [Outcome(Edition.KO, s.email, DeliveryState.SENT) for s in todo]
    for i in range(0, len(outcomes), 500):
        store.ledger.record(DATE, outcomes[i : i + 500], 3)
    seconds = time.perf_counter() - start
    assert store.ledger.delivery_counts(DATE) == {"sent": 20_000}
    assert seconds < 10, seconds  # ~1 s here: 100,000 subscribers fit well in a minute


def test_one_sender_at_a_time_per_issue(store):
    other = Store(Database(store.db.url))
    try:
        with store.db.sending_lock(DATE):
            busy = pytest.raises(NewsletterError, match="another process is sending the 2025-04-04")
            with busy, other.db.sending_lock(DATE):
                pass
            with other.db.sending_lock(DATE + dt.timedelta(days=1)):  # other dates are free
                pass
        with other.db.sending_lock(DATE):  # released
            pass
    finally:
        other.close()


# --- the bounce event log (newsletter/store/bounces.py, rules in bounces/policy.py) ---


def _event(kind, email, ref, **extra):
    from newsletter.store.bounces import BounceEvent

    return BounceEvent(kind=kind, email=email, source="imap", ref=ref, **extra)


def test_bounce_events_apply_the_policy_once(store):
    from newsletter.bounces.policy import rule
    from newsletter.store.bounces import EventKind

    store.subscribers.add("a@example.org", "ko")
    store.subscribers.add("b@example.org", "en")
    limit2 = rule(2)
    first = store.bounces.record(
        _event(EventKind.HARD, "A@example.org", "hard|2025-04-04|ko|a", issue_date=DATE), limit2
    )
    assert (first.duplicate, first.before, first.after, first.hard_bounces) == (
        False,
        SubscriberState.ACTIVE,
        SubscriberState.ACTIVE,
        1,
    )
    again = store.bounces.record(
        _event(EventKind.HARD, "a@example.org", "hard|2025-04-04|ko|a"), limit2
    )
    assert again.duplicate and store.subscribers.hard_bounces("a@example.org") == 1
    for n in range(3):  # soft bounces never bounce anyone
        store.bounces.record(_event(EventKind.SOFT, "a@example.org", f"soft-{n}"), limit2)
    assert store.subscribers.get("a@example.org").state is SubscriberState.ACTIVE
    second = store.bounces.record(
        _event(
            EventKind.HARD, "a@example.org", "hard|2025-05-19|ko|a", issue_date=dt.date(2025, 5, 19)
        ),
        limit2,
    )
    assert second.after is SubscriberState.BOUNCED  # two hard bounces over all issues
    complaint = store.bounces.record(_event(EventKind.COMPLAINT, "b@example.org", "c"), limit2)
    assert complaint.after is SubscriberState.COMPLAINED
    unsub = store.bounces.record(_event(EventKind.UNSUBSCRIBE, "b@example.org", "u"), limit2)
    assert unsub.after is SubscriberState.COMPLAINED  # a complaint stays a complaint
    stranger = store.bounces.record(_event(EventKind.HARD, "x@example.org", "x"), limit2)
    assert (stranger.duplicate, stranger.after) == (False, None)

    events = store.bounces.list()
    assert [e.kind for e in events] == [EventKind.HARD] + [EventKind.SOFT] * 3 + [
        EventKind.HARD,
        EventKind.COMPLAINT,
        EventKind.UNSUBSCRIBE,
        EventKind.HARD,
    ]
    assert all(e.at is not None and e.at.tzinfo is not None for e in events)
    assert store.bounces.list(since=events[-1].at + dt.timedelta(seconds=1)) == []
    counts = store.bounces.counts_by_issue(["2025-04-04", "2025-05-19", "2025-01-01"])
    assert counts == {
        "2025-04-04": {"hard_bounce": 1},
        "2025-05-19": {"hard_bounce": 1},
        "2025-01-01": {},
    }


def test_refused_recipients_are_events_too(store):
    from newsletter.store.bounces import EventKind

    store.subscribers.add("gone@example.org", "ko")
    subs = store.subscribers.list()
    store.ledger.start_deliveries(DATE, subs)
    reply = "550 5.1.1 <gone@example.org>: mailbox unavailable"
    store.ledger.record(
        DATE, [Outcome(Edition.KO, "gone@example.org", DeliveryState.FAILED, reply, True)], 3
    )
    [event] = store.bounces.list()
    assert (event.kind, event.source, event.issue_date, event.status) == (
        EventKind.HARD,
        "smtp",
        DATE,
        "5.1.1",
    )
    assert event.diagnostic == reply
    assert store.subscribers.hard_bounces("gone@example.org") == 1


def test_reactivate_needs_force_after_a_complaint(store):
    from newsletter.bounces.policy import reactivate, rule
    from newsletter.store.bounces import EventKind

    store.subscribers.add("c@example.org", "ko")
    store.bounces.record(_event(EventKind.COMPLAINT, "c@example.org", "c1"), rule(3))
    with pytest.raises(NewsletterError, match="spam") as caught:
        reactivate(store, "c@example.org")
    assert "--force" in caught.value.hint
    done = reactivate(store, "c@example.org", force=True)
    assert done.before is SubscriberState.COMPLAINED
    assert store.subscribers.get("c@example.org").state is SubscriberState.ACTIVE
    with pytest.raises(NewsletterError, match="nothing to undo"):
        reactivate(store, "c@example.org")
    with pytest.raises(NewsletterError, match="not a subscriber"):
        reactivate(store, "nobody@example.org")
    # An import never brings a complainer back.
    with pytest.raises(NewsletterError, match="complained"):
        store.bounces.record(_event(EventKind.COMPLAINT, "c@example.org", "c2"), rule(3))
        store.subscribers.add("c@example.org", "ko")


def test_complained_subscribers_stay_out_of_web_flows(store, tmp_path):
    from newsletter.bounces.policy import rule
    from newsletter.store.bounces import EventKind
    from newsletter.web.subscriptions import Subscriptions

    config = mail_config(tmp_path)
    store.subscribers.add("c@example.org", "ko")
    store.bounces.record(_event(EventKind.COMPLAINT, "c@example.org", "c"), rule(3))
    web = Subscriptions(config, b"secret", store.subscribers, lambda: dt.datetime.now(dt.UTC))
    web.unsubscribe("c@example.org")  # the one-click link of an old email
    assert store.subscribers.get("c@example.org").state is SubscriberState.COMPLAINED
    assert web.confirm("c@example.org", Edition.KO) == "stale"  # a confirmation link from before
    assert web.edition_of("c@example.org") is None
