"""The database: subscribers and the delivery ledger, on a real SQLite file
and a real throw-away PostgreSQL cluster (found by tests/real_parts.py)."""

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
import real_parts
from smtp_servers import free_port, mail_config

from newsletter.errors import NewsletterError
from newsletter.model import Edition, SubscriberState
from newsletter.store import DeliveryState, Outcome, Store

DATE = dt.date(2025, 4, 4)


def _postgres_url():
    """Start a throw-away PostgreSQL server; return its URL and how to stop it.

    initdb and pg_ctl come from real_parts (PATH, pg_config, /usr/lib/postgresql);
    a missing or failing PostgreSQL skips, or fails under NEWSLETTER_REQUIRE_REAL=1.
    """
    bindir = real_parts.postgres_bindir()
    initdb = str(bindir / "initdb")
    real_parts.import_real("psycopg", "psycopg[binary]")
    folder = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = real_parts.runuser()
        run_as = [str(runuser), "-u", "postgres", "--"]
        try:
            shutil.chown(folder, "postgres")
        except LookupError:
            shutil.rmtree(folder, ignore_errors=True)
            real_parts.require_real("PostgreSQL", "no 'postgres' user to run the server as")
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
                str(bindir / "pg_ctl"),
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
    except (OSError, subprocess.CalledProcessError) as exc:
        log = folder / "log"
        detail = getattr(exc, "stderr", b"") or b""
        if log.exists():
            detail += log.read_bytes()[-2000:]
        shutil.rmtree(folder, ignore_errors=True)
        real_parts.require_real(
            "PostgreSQL",
            f"cannot start a cluster with {bindir}: {exc}: {detail.decode(errors='replace')}",
        )
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
    store = Store(url)
    if request.param == "postgresql":  # one server for the module: start clean
        with store.engine.begin() as conn:
            conn.execute(store.deliveries.delete())
            conn.execute(store.subscribers.delete())
    yield store
    store.close()


def test_open_creates_state_folder_and_wal(tmp_path):
    config = mail_config(tmp_path)
    with Store.open(config) as store:
        assert (tmp_path / "state" / "newsletter.db").exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    with Store.open(config) as again, again.engine.connect() as conn:  # idempotent migrations
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == 2


def test_migrates_a_version_1_database_keeping_its_data(tmp_path):
    config = mail_config(tmp_path)
    with Store.open(config) as store:
        store.add("old@example.org", "en")
        with store.engine.begin() as conn:  # as version 1 left it: no issues table
            conn.exec_driver_sql("DROP TABLE issues")
            conn.exec_driver_sql("UPDATE schema_version SET version = 1")
    with Store.open(config) as store:
        assert store.get("old@example.org").edition is Edition.EN
        assert not store.issue_emailed(dt.date(2025, 4, 4))
        store.mark_issue_emailed(dt.date(2025, 4, 4))
        store.mark_issue_emailed(dt.date(2025, 4, 4))  # idempotent
        assert store.issue_emailed(dt.date(2025, 4, 4))


def test_add_normalises_and_is_unique(store):
    sub = store.add("  Kim@EXAMPLE.org ", "en", "김철수")
    assert sub.email == "Kim@example.org" and sub.edition is Edition.EN
    assert sub.state is SubscriberState.ACTIVE and sub.name == "김철수"
    again = store.add("kim@example.org", "both")
    assert again.id == sub.id and again.edition is Edition.BOTH and again.name == "김철수"
    assert len(store.list()) == 1
    assert store.get("KIM@example.org").email == "Kim@example.org"
    assert store.get("nobody@example.org") is None
    with pytest.raises(NewsletterError, match="not a valid email"):
        store.add("not-an-address")


def test_remove_marks_unsubscribed_and_readd_needs_reactivate(store):
    store.add("a@example.org")
    assert store.remove("a@example.org").state is SubscriberState.UNSUBSCRIBED
    assert store.get("a@example.org") is not None  # history stays
    with pytest.raises(NewsletterError, match="unsubscribed"):
        store.add("a@example.org")
    assert store.add("a@example.org", reactivate=True).state is SubscriberState.ACTIVE
    with pytest.raises(NewsletterError, match="not a subscriber"):
        store.remove("ghost@example.org")


def test_set_state_and_edition_and_list_filters(store):
    store.add("a@example.org", "ko")
    store.add("b@example.org", "en")
    store.set_state("b@example.org", "pending")
    store.set_edition("a@example.org", Edition.BOTH)
    assert [s.email for s in store.list(state="active")] == ["a@example.org"]
    assert [s.email for s in store.list(edition="both")] == ["a@example.org"]
    assert store.count() == {"active": 1, "pending": 1}


def test_import_reports_bad_rows_by_line_and_keeps_good(store, tmp_path):
    store.add("gone@example.org")
    store.remove("gone@example.org")
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
    report = store.import_csv(csv_file)
    assert (report.added, report.updated) == (3, 0)
    assert [p.line for p in report.problems] == [3, 4, 7, 8, 10]
    reasons = [p.reason for p in report.problems]
    assert "not a valid email" in reasons[0]
    assert "unknown edition 'fr'" in reasons[1]
    assert "duplicate of line 2" in reasons[2]
    assert "unsubscribed" in reasons[3]
    assert "too many columns" in reasons[4]
    assert store.get("d@example.org").name == "Lee, Young"
    assert store.get("c@example.org").edition is Edition.KO
    # Without a header row, and importing again updates instead of duplicating.
    report = store.import_csv(io.StringIO("a@example.org,en\nf@example.org,both\n"))
    assert (report.added, report.updated, report.problems) == (1, 1, ())


def test_export_round_trips(store, tmp_path):
    store.add("a@example.org", "ko", "김철수")
    store.add("b@example.org", "en")
    out = io.StringIO()
    assert store.export_csv(out) == 2
    assert out.getvalue().splitlines() == [
        "email,edition,name,state",
        "a@example.org,ko,김철수,active",
        "b@example.org,en,,active",
    ]


def test_ledger_plan_start_record(store):
    for i in range(5):
        store.add(f"u{i}@example.org", "ko" if i % 2 else "en")
    store.set_state("u4@example.org", "unsubscribed")
    todo, skipped = store.delivery_plan(DATE, [Edition.KO, Edition.EN])
    assert [s.email for s in todo] == [f"u{i}@example.org" for i in range(4)] and skipped == 0
    store.start_deliveries(DATE, todo)
    store.start_deliveries(DATE, todo)  # idempotent
    assert store.delivery_counts(DATE) == {"pending": 4}
    store.record(
        DATE,
        [
            Outcome(Edition.EN, "u0@example.org", DeliveryState.SENT, "250 ok"),
            Outcome(Edition.KO, "u1@example.org", DeliveryState.FAILED, "550 no", True),
            Outcome(Edition.EN, "u2@example.org", DeliveryState.PENDING, "451 later"),
        ],
        bounce_limit=1,
    )
    assert store.delivery_counts(DATE) == {"sent": 1, "failed": 1, "pending": 2}
    assert store.get("u1@example.org").state is SubscriberState.BOUNCED
    rows = {d.email: d for d in store.deliveries_for(DATE)}
    assert rows["u0@example.org"].sent_at is not None and rows["u0@example.org"].attempts == 1
    assert (
        rows["u2@example.org"].last_reply == "451 later" and rows["u2@example.org"].sent_at is None
    )
    todo, skipped = store.delivery_plan(DATE, list(Edition))
    assert [s.email for s in todo] == ["u2@example.org", "u3@example.org"]
    assert skipped == 1  # u0 sent; u1 is bounced now (not active)
    # A subscriber who switched edition after getting today's issue is skipped too.
    store.set_edition("u0@example.org", "ko")
    assert "u0@example.org" not in [s.email for s in store.delivery_plan(DATE, list(Edition))[0]]


def test_record_20000_outcomes_in_batches(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'fast.db'}")
    with store.engine.begin() as conn:
        now = dt.datetime.now(dt.UTC)
        conn.execute(
            store.subscribers.insert(),
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
    todo, _ = store.delivery_plan(DATE, list(Edition))
    store.start_deliveries(DATE, todo)
    outcomes = [Outcome(Edition.KO, s.email, DeliveryState.SENT) for s in todo]
    for i in range(0, len(outcomes), 500):
        store.record(DATE, outcomes[i : i + 500], 3)
    seconds = time.perf_counter() - start
    assert store.delivery_counts(DATE) == {"sent": 20_000}
    # Speed is measured (bench/send.py), never asserted: a loaded machine is slow.
    print(f"planned, started and recorded 20,000 deliveries in {seconds:.2f} s")


def test_one_sender_at_a_time_per_issue(store):
    other = Store(store.url)
    try:
        with store.sending_lock(DATE):
            busy = pytest.raises(NewsletterError, match="another process is sending the 2025-04-04")
            with busy, other.sending_lock(DATE):
                pass
            with other.sending_lock(DATE + dt.timedelta(days=1)):  # other dates are free
                pass
        with other.sending_lock(DATE):  # released
            pass
    finally:
        other.close()
