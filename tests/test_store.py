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
        assert conn.exec_driver_sql("SELECT version FROM schema_version").scalar() == 2


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


def test_twelve_commands_creating_a_fresh_sqlite_database_at_once(tmp_path):
    (tmp_path / "config.yaml").write_text("paths:\n  state: state\n", encoding="utf-8")
    _twelve_adds_at_once(tmp_path / "config.yaml")


def test_twelve_commands_creating_a_fresh_postgresql_database_at_once(tmp_path, mail_pg_url):
    import sqlalchemy as sa

    name = f"race_{os.getpid()}"
    admin = sa.create_engine(mail_pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    url = mail_pg_url.replace("/postgres?", f"/{name}?")
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
    assert _schema_rows(url) == [2]
