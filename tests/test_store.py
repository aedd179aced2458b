"""The database: subscribers and the delivery ledger, on a real SQLite file
and a real throw-away PostgreSQL cluster (found by tests/real_parts.py)."""

from __future__ import annotations

import datetime as dt
import io
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg_server import fresh_pg_database
from smtp_servers import mail_config

from newsletter.errors import NewsletterError
from newsletter.model import Cadence, Edition, SubscriberState, Week, parse_date
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.store.ledger import DeliveryState, Outcome
from newsletter.store.schema import SCHEMA_VERSION
from newsletter.store.subscriber_csv import export_csv, import_csv
from newsletter.store.subscribers import Preferences, as_utc

DATE = dt.date(2025, 4, 4)


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
            for table in ("bounce_events", "deliveries", "issues", "subscribers", "paper_links"):
                conn.execute(getattr(store.db.tables, table).delete())
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


# What each migration added, newest first: a database of version N lacks
# everything added after N (newsletter/store/schema.py, MIGRATIONS).
ADDED_AFTER = {
    6: ["DROP TABLE paper_links"],
    5: [
        f"ALTER TABLE subscribers DROP COLUMN {column}"
        for column in ("cadence", "topics", "previous_cadence", "cadence_from")
    ],
    4: ["ALTER TABLE subscribers DROP COLUMN state_changed_at"],
    3: ["DROP TABLE bounce_events"],
    2: ["DROP TABLE issues"],
}


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
def test_every_older_version_upgrades_to_the_current_keeping_its_data(store, version):
    """A database as each released version left it (with that version's data)
    is brought to SCHEMA_VERSION on open: every row kept, new columns filled."""
    from newsletter.model import Cadence
    from newsletter.papers.links import Lookup, PaperLink
    from newsletter.store.links import LinkCache
    from newsletter.store.subscribers import Preferences

    week_of = dt.datetime(2025, 4, 9, 12, tzinfo=dt.UTC)  # a Wednesday
    added = store.subscribers.add("old@example.org", "en", "김옛날")
    if version >= 5:  # a weekly reader with topics and a change waiting for its week
        store.subscribers.add("weekly@example.org", "ko", preferences=Preferences(Cadence.WEEKLY))
        store.subscribers.set_preferences(
            "weekly@example.org", Preferences(Cadence.DAILY, ("moe", "rl")), at=week_of
        )
    sent = dt.date(2024, 1, version)
    if version >= 2:
        store.ledger.mark_issue_emailed(sent)
    with store.db.engine.begin() as conn:
        for newer in range(SCHEMA_VERSION, version, -1):
            for statement in ADDED_AFTER[newer]:
                conn.exec_driver_sql(statement)
        conn.exec_driver_sql(f"UPDATE schema_version SET version = {version}")
    with Store(Database(store.db.url)) as again:
        with again.db.engine.connect() as conn:
            now_version = conn.exec_driver_sql("SELECT version FROM schema_version").scalar()
            t = again.db.tables.subscribers
            created = conn.execute(
                t.select().with_only_columns(t.c.updated_at).where(t.c.id == added.id)
            ).scalar()
        assert now_version == SCHEMA_VERSION == 6
        old = again.subscribers.get("old@example.org")
        assert (old.id, old.edition, old.name) == (added.id, Edition.EN, "김옛날")
        assert old.state is SubscriberState.ACTIVE
        assert old.state_changed_at == (as_utc(created) if version < 4 else added.state_changed_at)
        assert (old.cadence, old.topics, old.cadence_from) == (Cadence.DAILY, (), None)
        if version >= 5:
            weekly = again.subscribers.get("weekly@example.org")
            assert (weekly.cadence, weekly.previous_cadence) == (Cadence.DAILY, Cadence.WEEKLY)
            assert weekly.topics == ("moe", "rl") and weekly.cadence_from == dt.date(2025, 4, 14)
        assert again.ledger.issue_emailed(sent) is (version >= 2)
        again.ledger.mark_issue_emailed(sent)
        assert again.ledger.issue_emailed(sent)
        assert again.bounces.list() == []  # the bounce log is there (created or kept)
        cache = LinkCache(again.db)  # migration 6: the paper link cache
        cache.put(f"{version:064d}", "T", Lookup.found(PaperLink.for_arxiv("2504.02807")), week_of)
        assert cache.get(f"{version:064d}").lookup.link.arxiv_id == "2504.02807"
        indexes = sa.inspect(again.db.engine).get_indexes("paper_links")
        assert [i["name"] for i in indexes] == ["ix_paper_links_retry"]


def test_state_changed_at_moves_with_the_state_only(store):
    t0 = dt.datetime(2025, 4, 4, 7, 0, 0, 500_000, tzinfo=dt.UTC)
    sub = store.subscribers.add("a@example.org", "ko", at=t0)
    assert sub.state_changed_at == t0.replace(microsecond=0)
    later = t0 + dt.timedelta(hours=1)
    store.subscribers.set_edition("a@example.org", "en", at=later)
    store.subscribers.set_state("a@example.org", "active", at=later)  # no change
    assert store.subscribers.get("a@example.org").state_changed_at == t0.replace(microsecond=0)
    gone = store.subscribers.remove("a@example.org", at=later)
    assert gone.state_changed_at == later.replace(microsecond=0)
    back = store.subscribers.add("a@example.org", "ko", reactivate=True, at=later + dt.timedelta(1))
    assert back.state_changed_at == (later + dt.timedelta(1)).replace(microsecond=0)


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


def _fill_every_state(subscribers):
    """Subscribers in every state, with names that need CSV quoting, at known times."""
    t0 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    subscribers.add("a@example.org", "ko", "김철수", at=t0)
    subscribers.add("b@example.org", "en", 'Lee, "Young"', at=t0 + dt.timedelta(days=1))
    subscribers.add("Pending@Example.org", "both", state=SubscriberState.PENDING, at=t0)
    subscribers.add("left@example.org", "en", at=t0)
    subscribers.remove("left@example.org", at=t0 + dt.timedelta(days=30))
    subscribers.add("bounced@example.org", "ko", at=t0)
    with subscribers.db.engine.begin() as conn:
        t = subscribers.table
        conn.execute(
            t.update().where(t.c.email_key == "bounced@example.org").values(hard_bounces=3)
        )
    subscribers.set_state("bounced@example.org", "bounced", at=t0 + dt.timedelta(days=40))
    subscribers.add("spam@example.org", "en", at=t0)  # an ARF complaint made it complained
    subscribers.set_state("spam@example.org", "complained", at=t0 + dt.timedelta(days=50))


def test_export_has_every_column_and_imports_as_it_is(store, tmp_path):
    _fill_every_state(store.subscribers)
    out = io.StringIO()
    assert export_csv(store.subscribers, out) == 6
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "email,edition,name,state,hard_bounces,created_at,updated_at,state_changed_at,"
        "cadence,topics,previous_cadence,cadence_from"
    )
    assert lines[1].startswith("a@example.org,ko,김철수,active,0,2025-01-02T03:04:05+00:00,")
    assert '"Lee, ""Young"""' in lines[2]
    assert lines[5].startswith("bounced@example.org,ko,,bounced,3,2025-01-02T03:04:05+00:00,")
    assert lines[5].endswith(",2025-02-11T03:04:05+00:00,daily,,,")  # when it bounced
    assert lines[6].startswith("spam@example.org,en,,complained,0,2025-01-02T03:04:05+00:00,")
    assert lines[6].endswith(",2025-02-21T03:04:05+00:00,daily,,,")  # when it complained
    # Into a fresh database: the same list, every state and time as exported.
    fresh = Store(Database(f"sqlite:///{tmp_path / 'fresh.db'}"))
    try:
        (tmp_path / "list.csv").write_text(out.getvalue(), encoding="utf-8")
        report = import_csv(fresh.subscribers, tmp_path / "list.csv")
        assert (report.added, report.problems) == (6, ())
        again = io.StringIO()
        export_csv(fresh.subscribers, again)
        assert again.getvalue() == out.getvalue()
        assert fresh.subscribers.count() == {
            "active": 2,
            "pending": 1,
            "unsubscribed": 1,
            "bounced": 1,
            "complained": 1,
        }
        # Imported twice: nothing changes.
        report = import_csv(fresh.subscribers, tmp_path / "list.csv")
        assert (report.added, report.updated, report.unchanged) == (0, 0, 6)
    finally:
        fresh.close()


def test_import_never_reactivates_and_records_departures(store, tmp_path):
    _fill_every_state(store.subscribers)
    store.subscribers.add("c@example.org", "ko")
    rows = (
        "email,state\n"
        "left@example.org,active\n"  # 2: left: not re-subscribed
        "bounced@example.org,\n"  # 3: bounced, no state given: not re-subscribed
        "a@example.org,unsubscribed\n"  # 4: a departure: recorded
        "b@example.org,pending\n"  # 5: active stays active (an import confirms nobody)
        "pending@example.org,active\n"  # 6: nor does it activate a pending sign-up
        "new@example.org,bounced\n"  # 7: new, as exported
        "x@example.org,gone\n"  # 8: unknown state
        "spam@example.org,active\n"  # 9: complained: never re-subscribed by an import
        "c@example.org,complained\n"  # 10: a complaint: recorded
        "new-spam@example.org,complained\n"  # 11: new, as exported
    )
    (tmp_path / "list.csv").write_text(rows, encoding="utf-8")
    report = import_csv(store.subscribers, tmp_path / "list.csv")
    assert [p.line for p in report.problems] == [2, 3, 8, 9]
    assert "unsubscribed; not re-subscribing" in report.problems[0].reason
    assert "bounced; not re-subscribing" in report.problems[1].reason
    assert "unknown state 'gone'" in report.problems[2].reason
    assert "complained; not re-subscribing" in report.problems[3].reason
    state = {s.email.lower(): s.state.value for s in store.subscribers.list()}
    assert state == {
        "a@example.org": "unsubscribed",
        "b@example.org": "active",
        "pending@example.org": "pending",
        "left@example.org": "unsubscribed",
        "bounced@example.org": "bounced",
        "new@example.org": "bounced",
        "c@example.org": "complained",
        "spam@example.org": "complained",
        "new-spam@example.org": "complained",
    }
    with pytest.raises(NewsletterError, match="unknown column 'status'"):
        import_csv(store.subscribers, io.StringIO("email,status\na@example.org,x\n"))


def test_ledger_plan_start_record(store):
    for i in range(5):
        store.subscribers.add(f"u{i}@example.org", "ko" if i % 2 else "en")
    store.subscribers.set_state("u4@example.org", "unsubscribed")
    todo, skipped = store.plan.todo(DATE, [Edition.KO, Edition.EN])
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
    todo, skipped = store.plan.todo(DATE, list(Edition))
    assert [s.email for s in todo] == ["u2@example.org", "u3@example.org"]
    assert skipped == 1  # u0 sent; u1 is bounced now (not active)
    # A subscriber who switched edition after getting today's issue is skipped too.
    store.subscribers.set_edition("u0@example.org", "ko")
    assert "u0@example.org" not in [s.email for s in store.plan.todo(DATE, list(Edition))[0]]


def test_record_20000_outcomes_in_batches(tmp_path):
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
    todo, _ = store.plan.todo(DATE, list(Edition))
    store.ledger.start_deliveries(DATE, todo)
    outcomes = [Outcome(Edition.KO, s.email, DeliveryState.SENT) for s in todo]
    for i in range(0, len(outcomes), 500):
        store.ledger.record(DATE, outcomes[i : i + 500], 3)
    seconds = time.perf_counter() - start
    assert store.ledger.delivery_counts(DATE) == {"sent": 20_000}
    # Speed is measured (bench/send.py), never asserted: a loaded machine is slow.
    print(f"planned, started and recorded 20,000 deliveries in {seconds:.2f} s")


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
    from newsletter.web.subscriptions import ConfirmLink, Subscriptions

    config = mail_config(tmp_path)
    issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store.subscribers.add("c@example.org", "ko", state=SubscriberState.PENDING, at=issued)
    store.subscribers.set_state("c@example.org", SubscriberState.ACTIVE, issued)
    store.bounces.record(_event(EventKind.COMPLAINT, "c@example.org", "c"), rule(3))
    web = Subscriptions(config, b"secret", store.subscribers, lambda: dt.datetime.now(dt.UTC))
    web.unsubscribe("c@example.org")  # the one-click link of an old email
    assert store.subscribers.get("c@example.org").state is SubscriberState.COMPLAINED
    link = ConfirmLink("c@example.org", Edition.KO, issued)  # a confirmation link from before
    assert web.link_state(link) == "stale"
    assert web.confirm(link) == "stale"
    assert store.subscribers.get("c@example.org").state is SubscriberState.COMPLAINED
    assert web.edition_of("c@example.org") is None


def test_move_from_sqlite_to_postgresql_through_the_cli(mail_pg_url, project, tmp_path):
    """The README's move, command by command: nobody is mailed twice afterwards."""

    from helpers import run_cli

    def cli(*args: str):
        result = run_cli(*args, cwd=project)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    for address, edition in [
        ("a@example.org", "ko"),
        ("b@example.org", "en"),
        ("c@example.org", "both"),
    ]:
        cli("subscribers", "add", address, "--edition", edition, "--name", "김 " + address[0])
    cli("subscribers", "add", "left@example.org")
    cli("subscribers", "remove", "left@example.org")
    cli("publish", "--date", "2025-04-04", "--force")
    sent = sorted((project / "outbox" / "2025-04-04").glob("*.eml"))
    assert len(sent) == 3
    with Store.open(mail_config(project)) as old:
        old.subscribers.add("pending@example.org", "ko", state=SubscriberState.PENDING)
        old.subscribers.set_state("c@example.org", "bounced")
        old.subscribers.add("spam@example.org", "en")
        old.subscribers.set_state("spam@example.org", "complained")
        old.ledger.mark_issue_emailed(dt.date(2025, 4, 4))
        old.ledger.mark_issue_emailed(dt.date(2025, 5, 19))  # a mark without rows
    subscribers_csv = cli("subscribers", "export").stdout
    ledger_csv = cli("ledger", "export").stdout
    (project / "subscribers.csv").write_text(subscribers_csv, encoding="utf-8")
    (project / "ledger.csv").write_text(ledger_csv, encoding="utf-8")

    # A fresh PostgreSQL database, named in the config.
    url = fresh_pg_database(mail_pg_url, "moved")
    config = project / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + f"database_url: '{url}'\n")

    assert "6 added" in cli("subscribers", "import", "subscribers.csv").stdout
    assert "3 ledger rows added" in cli("ledger", "import", "ledger.csv").stdout
    assert cli("subscribers", "export").stdout == subscribers_csv
    assert cli("ledger", "export").stdout == ledger_csv
    # The issue that went out is not sent again, to anyone.
    again = cli("publish", "--date", "2025-04-04", "--force")
    assert "email: 0 sent, 0 failed, 2 skipped" in again.stdout
    assert sorted((project / "outbox" / "2025-04-04").glob("*.eml")) == sent
    with Store(Database(url)) as moved:
        assert moved.db.engine.dialect.name == "postgresql"
        assert moved.ledger.issue_emailed(dt.date(2025, 5, 19))
        states = {s.email: s.state.value for s in moved.subscribers.list()}
    assert states == {
        "a@example.org": "active",
        "b@example.org": "active",
        "c@example.org": "bounced",
        "left@example.org": "unsubscribed",
        "pending@example.org": "pending",
        "spam@example.org": "complained",
    }
    # Importing the same files again changes nothing.
    assert (
        "0 added, 0 updated, 6 unchanged" in cli("subscribers", "import", "subscribers.csv").stdout
    )
    assert "0 ledger rows added, 0 bad rows" in cli("ledger", "import", "ledger.csv").stdout


def test_ledger_import_never_makes_a_sent_message_sendable_again(store, tmp_path):
    from newsletter.store.ledger_csv import export_ledger, import_ledger

    for address in ("a@example.org", "b@example.org", "c@example.org"):
        store.subscribers.add(address, "ko")
    todo, _ = store.plan.todo(DATE, [Edition.KO])
    store.ledger.start_deliveries(DATE, todo)
    store.ledger.record(
        DATE,
        [
            Outcome(Edition.KO, "a@example.org", DeliveryState.SENT, "250 ok"),
            Outcome(Edition.KO, "b@example.org", DeliveryState.PENDING, "451 later"),
        ],
        bounce_limit=3,
    )
    out = io.StringIO()
    assert export_ledger(store.db, out) == 3
    # The file says a is pending and b was sent, and has one bad row.
    text = out.getvalue().replace("a@example.org,sent", "a@example.org,pending")
    text = text.replace("b@example.org,pending", "b@example.org,sent")
    text += "2025-04-04,ko,d@example.org,lost,1,,,,,\n"
    (tmp_path / "ledger.csv").write_text(text, encoding="utf-8")
    added, problems = import_ledger(store.db, tmp_path / "ledger.csv")
    assert added == 0
    assert [(p.line, "unknown state 'lost'" in p.reason) for p in problems] == [(5, True)]
    states = {d.email: d.state for d in store.ledger.deliveries_for(DATE)}
    assert states == {"a@example.org": "sent", "b@example.org": "sent", "c@example.org": "pending"}
    assert not store.ledger.issue_emailed(DATE)
    with pytest.raises(NewsletterError, match="not a ledger export"):
        (tmp_path / "other.csv").write_text("email,edition\n", encoding="utf-8")
        import_ledger(store.db, tmp_path / "other.csv")


def test_ledger_import_counts_in_good_english(cli, project):
    from newsletter.store.ledger_csv import COLUMNS

    row = "2025-04-04,ko,a@example.org,sent,1,,,,,"
    (project / "one.csv").write_text(f"{','.join(COLUMNS)}\n{row}\n", encoding="utf-8")
    out = cli("ledger", "import", "one.csv", cwd=project).stdout
    assert "1 ledger row added, 0 bad rows" in out


def test_ledger_export_and_import_keep_weekly_issues_as_weeks(store, tmp_path):
    """A weekly issue's key `2025-W14` survives a move; it never becomes its Monday."""
    from newsletter.store.ledger_csv import export_ledger, import_ledger

    week = Week(2025, 14)
    weekly = Preferences(cadence=Cadence.WEEKLY)
    store.subscribers.add("w@example.org", "en", preferences=weekly)
    assert store.plan.todo(week, [Edition.EN], cadence=Cadence.WEEKLY)[0] != []
    store.ledger.start_deliveries(week, [store.subscribers.get("w@example.org")])
    store.ledger.record(week, [Outcome(Edition.EN, "w@example.org", DeliveryState.SENT, "250")], 3)
    store.ledger.mark_issue_emailed(week)
    out = io.StringIO()
    export_ledger(store.db, out)
    (tmp_path / "ledger.csv").write_text(out.getvalue(), encoding="utf-8")
    assert "2025-W14,en,w@example.org,sent" in out.getvalue()

    with Store(Database(f"sqlite:///{tmp_path / 'moved.db'}")) as moved:
        moved.subscribers.add("w@example.org", "en", preferences=weekly)
        assert moved.plan.todo(week, [Edition.EN], cadence=Cadence.WEEKLY)[0] != []
        added, problems = import_ledger(moved.db, tmp_path / "ledger.csv")
        assert (added, problems) == (1, [])
        assert [d.state for d in moved.ledger.deliveries_for(week)] == ["sent"]
        assert moved.ledger.deliveries_for(week.monday) == []
        assert moved.ledger.issue_emailed(week) and not moved.ledger.issue_emailed(week.monday)
        # The weekly email is not sent again after the move.
        assert moved.plan.todo(week, [Edition.EN], cadence=Cadence.WEEKLY) == ([], 1)


@pytest.mark.parametrize("text", ["2025-W14", "20250404", "2025-W14-1", "2025-4-4", " 2025-04-04"])
def test_a_day_is_written_2025_04_04_and_nothing_else(text):
    with pytest.raises(ValueError, match="not a date like 2025-04-04"):
        parse_date(text)
    assert parse_date("2025-04-04") == DATE


def test_a_bounce_records_when_the_state_changed(store):
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    store.subscribers.add("x@example.org", "ko", at=long_ago)
    store.subscribers.add("y@example.org", "ko", at=long_ago)
    hard = [Outcome(Edition.KO, a, DeliveryState.FAILED, "550 no", True) for a in ("x@example.org", "y@example.org")]  # fmt: skip
    store.ledger.record(DATE, hard[:1], bounce_limit=1)
    store.ledger.record(DATE, hard[1:], bounce_limit=2)  # one bounce: still active
    x, y = store.subscribers.get("x@example.org"), store.subscribers.get("y@example.org")
    assert x.state is SubscriberState.BOUNCED and x.state_changed_at > long_ago
    assert y.state is SubscriberState.ACTIVE and y.state_changed_at == long_ago


def test_a_reported_bounce_or_complaint_records_when_the_state_changed(store):
    """Events from a mailbox or webhook move state_changed_at as refusals at send time do."""
    from newsletter.bounces.policy import reactivate, rule
    from newsletter.store.bounces import EventKind

    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for address in ("hard@example.org", "spam@example.org", "soft@example.org"):
        store.subscribers.add(address, "ko", at=long_ago)
    store.bounces.record(_event(EventKind.HARD, "hard@example.org", "h"), rule(1))
    store.bounces.record(_event(EventKind.COMPLAINT, "spam@example.org", "c"), rule(1))
    store.bounces.record(_event(EventKind.SOFT, "soft@example.org", "s"), rule(1))
    hard, spam, soft = (
        store.subscribers.get(a)
        for a in ("hard@example.org", "spam@example.org", "soft@example.org")
    )
    assert hard.state is SubscriberState.BOUNCED and hard.state_changed_at > long_ago
    assert spam.state is SubscriberState.COMPLAINED and spam.state_changed_at > long_ago
    assert soft.state is SubscriberState.ACTIVE and soft.state_changed_at == long_ago
    reactivate(store, "hard@example.org")
    back = store.subscribers.get("hard@example.org")
    assert back.state is SubscriberState.ACTIVE and back.state_changed_at >= hard.state_changed_at


# --- several processes creating the database at once ------------------------------


def _schema_rows(url: str) -> list[int]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.exec_driver_sql("SELECT version FROM schema_version")]
    finally:
        engine.dispose()


def _twelve_adds_at_once(config: Path) -> None:
    from concurrent_cli import run_together

    from newsletter.config import load_config
    from newsletter.store.schema import SCHEMA_VERSION

    adds = [("--config", str(config), "subscribers", "add", f"u{i}@example.org") for i in range(12)]
    results = run_together(adds)
    failed = [r.stderr for r in results if r.returncode != 0]
    assert not failed, failed[0]
    url = load_config(config).db_url
    assert _schema_rows(url) == [SCHEMA_VERSION]
    with Store(Database(url)) as store:
        assert len(store.subscribers.list()) == 12


def test_opening_waits_while_another_process_holds_the_write_lock(tmp_path, monkeypatch):
    """SQLite refuses PRAGMA journal_mode=WAL at once (no busy handler) while another
    connection holds the write lock, as a command creating the schema does: opening
    waits for the lock instead of failing with "database is locked"."""
    import sqlite3
    import threading
    import time

    path = tmp_path / "nl.db"
    holder = sqlite3.connect(path, isolation_level=None)  # a fresh file, rollback journal
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other (x)")
    waiting = threading.Event()
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        waiting.set()  # the open was refused once and waits: the event under test
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    opened: list[object] = []

    def open_it() -> None:
        try:
            opened.append(Database(f"sqlite:///{path}"))
        except Exception as exc:  # the old code: NewsletterError "stayed locked" at once
            opened.append(exc)
        finally:
            waiting.set()

    thread = threading.Thread(target=open_it)
    thread.start()
    waiting.wait()
    holder.execute("COMMIT")
    holder.close()
    thread.join()
    [db] = opened
    assert isinstance(db, Database), db
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.close()


def test_twelve_commands_creating_a_fresh_sqlite_database_at_once(tmp_path):
    (tmp_path / "config.yaml").write_text("paths:\n  state: state\n", encoding="utf-8")
    _twelve_adds_at_once(tmp_path / "config.yaml")


def test_twelve_commands_creating_a_fresh_postgresql_database_at_once(tmp_path, mail_pg_url):
    url = fresh_pg_database(mail_pg_url, "race")
    (tmp_path / "config.yaml").write_text(f"database_url: '{url}'\n", encoding="utf-8")
    _twelve_adds_at_once(tmp_path / "config.yaml")


def test_a_database_left_with_several_version_rows_is_repaired(tmp_path):
    url = f"sqlite:///{tmp_path / 'nl.db'}"
    Database(url).close()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as an old, unlocked start could leave it
        conn.exec_driver_sql("INSERT INTO schema_version VALUES (0), (2)")
    engine.dispose()
    Database(url).close()
    from newsletter.store.schema import SCHEMA_VERSION

    assert _schema_rows(url) == [SCHEMA_VERSION]
