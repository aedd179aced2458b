"""Scheduler pieces that need no daemon: send times across DST, settling, the lock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from zoneinfo import ZoneInfo

import pytest

from newsletter.errors import NewsletterError
from newsletter.send_times import is_late, send_datetime
from newsletter.watch import Watcher, single_instance

NEW_YORK = ZoneInfo("America/New_York")
SEOUL = ZoneInfo("Asia/Seoul")


def test_send_time_is_aware_in_the_configured_zone():
    when = send_datetime(dt.date(2025, 4, 4), dt.time(7, 0), SEOUL)
    assert when.isoformat() == "2025-04-04T07:00:00+09:00"
    assert when.astimezone(dt.UTC).isoformat() == "2025-04-03T22:00:00+00:00"


def test_send_time_on_both_sides_of_dst_in_new_york():
    before = send_datetime(dt.date(2025, 3, 8), dt.time(7, 0), NEW_YORK)
    after = send_datetime(dt.date(2025, 3, 10), dt.time(7, 0), NEW_YORK)
    assert before.utcoffset() == dt.timedelta(hours=-5)
    assert after.utcoffset() == dt.timedelta(hours=-4)
    # 07:00 local both days: 12:00 UTC in winter, 11:00 UTC in summer.
    assert before.astimezone(dt.UTC).hour == 12
    assert after.astimezone(dt.UTC).hour == 11


def test_send_time_skipped_by_spring_forward_moves_forward():
    # 2025-03-09 02:30 does not exist in New York: clocks jump 02:00 -> 03:00.
    when = send_datetime(dt.date(2025, 3, 9), dt.time(2, 30), NEW_YORK)
    assert when.isoformat() == "2025-03-09T03:30:00-04:00"


def test_send_time_repeated_by_fall_back_is_its_first_occurrence():
    # 2025-11-02 01:30 happens twice in New York; send at the first (EDT).
    when = send_datetime(dt.date(2025, 11, 2), dt.time(1, 30), NEW_YORK)
    assert when.isoformat() == "2025-11-02T01:30:00-04:00"
    assert when.astimezone(dt.UTC).isoformat() == "2025-11-02T05:30:00+00:00"


@pytest.mark.parametrize(
    ("date", "late"),
    [(dt.date(2025, 4, 4), False), (dt.date(2025, 4, 2), False), (dt.date(2025, 4, 1), True)],
)
def test_lateness_limit(date, late):
    assert is_late(date, dt.date(2025, 4, 4), 2) is late


def test_watcher_waits_until_a_file_settles(tmp_path):
    now = [100.0]
    watcher = Watcher(tmp_path, settle_seconds=10, clock=lambda: now[0])
    path = tmp_path / "d.txt"
    path.write_text("2025-04-04\n")
    assert watcher.settled() == {}
    now[0] += 5
    with path.open("a") as handle:  # still being written
        handle.write("more\n")
    assert watcher.settled() == {}
    assert watcher.unsettled() == [path]
    now[0] += 9
    assert watcher.settled() == {}
    now[0] += 1
    assert list(watcher.settled()) == [path]
    path.unlink()
    assert watcher.settled() == {}


def test_daemon_publishes_a_file_only_once_it_has_settled(tmp_path, caplog):
    # The daemon's own Watcher on a clock of ours: a digest written in two parts,
    # the second before settle_seconds have passed, is neither published nor
    # reported bad while it is being written.
    import logging

    from helpers import SAMPLE_DIGESTS

    from newsletter.config import config_from_dict
    from newsletter.scheduler import Daemon

    (tmp_path / "digests").mkdir()
    config = config_from_dict(
        {
            "site": {"timezone": "Asia/Seoul"},
            "paths": {"digests": "digests", "public": "public", "state": "state"},
            "papers": {"lookup": "off"},
            "schedule": {"settle_seconds": 10},
        },
        tmp_path,
    )
    daemon = Daemon(config, now=lambda: dt.datetime(2025, 4, 4, 0, 0, tzinfo=SEOUL))
    clock = [500.0]
    daemon.folder.watcher.clock = lambda: clock[0]
    daemon._send_due = lambda: None  # this test is about publishing
    text = (SAMPLE_DIGESTS / "2025-04-04.txt").read_text(encoding="utf-8")
    path = tmp_path / "digests" / "today.txt"
    page = tmp_path / "public" / "ko" / "2025-04-04" / "index.html"
    with caplog.at_level(logging.INFO, logger="newsletter"):
        path.write_text(text[: len(text) // 2], encoding="utf-8")
        daemon.tick()
        clock[0] += 9.5
        daemon.tick()
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text[len(text) // 2 :])
        clock[0] += 1  # 10.5 s after the first part, 1 s after the second
        daemon.tick()
        assert not page.exists()
        assert daemon.folder.watcher.unsettled() == [path]
        clock[0] += 9.5
        daemon.tick()
        assert not page.exists()
        clock[0] += 0.5  # the second part has settled: 10 s unchanged
        daemon.tick()
    assert page.exists()
    assert not [r for r in caplog.records if getattr(r, "event", None) == "bad_digest"]
    # The first tick publishes the (empty) site; the digest is published once, settled.
    published = [r for r in caplog.records if getattr(r, "event", None) == "published"]
    assert [r.date for r in published] == [None, "2025-04-04"]


def test_a_second_instance_is_refused(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from newsletter.watch import single_instance\n"
            "with single_instance(Path(sys.argv[1])):\n"
            "    print('locked', flush=True); time.sleep(30)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(NewsletterError, match=rf"pid {holder.pid}"), single_instance(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with single_instance(tmp_path):  # free again once the holder is gone
        pass


@pytest.mark.parametrize(
    ("now", "due"),
    [
        # The spring-forward day: 07:00 EDT is 11:00 UTC (not 12:00 as in winter).
        (dt.datetime(2025, 3, 9, 10, 59, tzinfo=dt.UTC), False),
        (dt.datetime(2025, 3, 9, 11, 0, tzinfo=dt.UTC), True),
        # The fall-back day: 07:00 EST is 12:00 UTC.
        (dt.datetime(2025, 11, 2, 11, 59, tzinfo=dt.UTC), False),
        (dt.datetime(2025, 11, 2, 12, 0, tzinfo=dt.UTC), True),
    ],
)
def test_due_across_dst_in_new_york(tmp_path, now, due):
    from newsletter.config import config_from_dict
    from newsletter.model import Digest
    from newsletter.send_times import SendTimes

    config = config_from_dict(
        {"site": {"timezone": "America/New_York"}, "schedule": {"send_time": "07:00"}}, tmp_path
    )
    digests = [Digest(now.astimezone(NEW_YORK).date(), (), "d.txt")]
    assert bool(SendTimes(config).due(digests, now)) is due


def test_daemon_backs_off_between_polls_then_gives_up(tmp_path, monkeypatch):
    from smtp_servers import Handler, mail_config, sample_digest, start_server

    from newsletter.scheduler import Daemon
    from newsletter.store import Store

    monkeypatch.setenv("NEWSLETTER_SECRET", "test-secret-0123456789")
    handler = Handler(temp_fail_first=10**6)  # 451 to everything
    clock = [dt.datetime(2025, 4, 4, 8, 0, tzinfo=SEOUL)]
    with start_server(handler) as server:
        smtp = {"host": server.host, "port": server.port, "security": "none", "connections": 1}
        config = mail_config(tmp_path, transport="smtp", smtp=smtp, max_attempts=6)
        with Store.open(config) as store:
            store.subscribers.add("reader@example.org", "both")
        daemon = Daemon(config, now=lambda: clock[0])
        daemon.retry_delays = (0.01,)
        daemon._digests = [sample_digest()]

        def poll_after(seconds: float) -> int:
            clock[0] += dt.timedelta(seconds=seconds)
            daemon._send_due()
            return handler.data_calls

        # Two attempts per delivery; then waits of 60 s, then 120 s between polls.
        assert [poll_after(s) for s in (0, 30, 29, 1, 119, 1)] == [2, 2, 2, 4, 4, 6]
        # The sixth attempt was the last (email.max_attempts): failed, issue done.
        assert [poll_after(s) for s in (3600, 7200)] == [6, 6]
        with Store.open(config) as store:
            assert store.ledger.delivery_counts(clock[0].date()) == {"failed": 1}
            assert store.ledger.issue_emailed(clock[0].date())


# --- files that are not digests, and corrections, through the daemon's tick --------


def daemon_project(tmp_path):
    from newsletter.config import config_from_dict

    (tmp_path / "digests").mkdir()
    return config_from_dict(
        {
            "site": {"base_url": "https://example.org/papers/", "timezone": "Asia/Seoul"},
            "paths": {"digests": "digests", "public": "public", "state": "state"},
            "papers": {"lookup": "off"},
            "schedule": {"settle_seconds": 0},
        },
        tmp_path,
    )


def test_watcher_skips_editor_and_system_files(tmp_path):
    from newsletter.digest import ignored_reason

    names = ["2025-04-04.txt", "#2025-04-04.txt#", ".#2025-04-04.txt", "2025-04-04.txt~"]
    names += ["2025-04-04.txt.bak", ".2025-04-04.txt.swp", "x.swo", ".DS_Store", "._x.txt"]
    names += ["Thumbs.db", "desktop.ini", "x.part", "x.crdownload", "x.download", "x.tmp"]
    for name in names:
        (tmp_path / name).write_text("2025-04-04\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    watcher = Watcher(tmp_path, settle_seconds=0)
    assert list(watcher.settled()) == [tmp_path / "2025-04-04.txt"]
    assert sorted(item.path.name for item in watcher.skipped) == sorted(names[1:])
    assert {ignored_reason(name) for name in names[1:]} >= {
        "Emacs auto-save file",
        "Emacs lock file",
        "backup file",
        "Vim swap file",
        "macOS metadata",
        "partial download",
        "temporary file",
    }


def test_daemon_publishes_beside_an_emacs_autosave_and_says_so_with_v(tmp_path, caplog):
    import logging

    from helpers import SAMPLE_DIGESTS

    from newsletter.scheduler import Daemon

    config = daemon_project(tmp_path)
    text = (SAMPLE_DIGESTS / "2025-04-04.txt").read_text(encoding="utf-8")
    (tmp_path / "digests" / "2025-04-04.txt").write_text(text, encoding="utf-8")
    (tmp_path / "digests" / "#2025-04-04.txt#").write_text(text + "\n#more", encoding="utf-8")
    now = dt.datetime(2025, 6, 1, 9, 0, tzinfo=SEOUL)
    daemon = Daemon(config, now=lambda: now, verbose=True)
    with caplog.at_level(logging.INFO, logger="newsletter"):
        daemon.tick()
        daemon.tick()
    messages = [r.getMessage() for r in caplog.records]
    assert (tmp_path / "public/ko/2025-04-04/index.html").is_file()
    assert not [m for m in messages if "not published" in m or "same date" in m]
    skipped = [m for m in messages if m.startswith("skipped")]
    assert skipped == [
        f"skipped {tmp_path / 'digests' / '#2025-04-04.txt#'} (Emacs auto-save file)"
    ]


def test_daemon_correction_moves_feed_times_to_its_clock(tmp_path):
    from helpers import SAMPLE_DIGESTS
    from lxml import etree

    from newsletter.digest import format_digest, read_digest
    from newsletter.scheduler import Daemon

    config = daemon_project(tmp_path)
    digest = read_digest(SAMPLE_DIGESTS / "2025-04-04.txt").digest
    path = tmp_path / "digests" / "issue.txt"
    path.write_text(format_digest(digest), encoding="utf-8")
    clock = [dt.datetime(2025, 6, 1, 9, 0, tzinfo=SEOUL)]
    daemon = Daemon(config, now=lambda: clock[0])
    daemon.tick()
    feed = tmp_path / "public/feeds/en/atom.xml"
    updated = "{http://www.w3.org/2005/Atom}updated"
    assert etree.fromstring(feed.read_bytes()).findtext(updated) == "2025-04-04T00:00:00+09:00"

    clock[0] = dt.datetime(2025, 6, 2, 18, 45, 30, tzinfo=SEOUL)
    fixed = dataclasses.replace(digest.entries[0], title="Fixed title")
    path.write_text(
        format_digest(dataclasses.replace(digest, entries=(fixed, *digest.entries[1:])))
    )
    daemon.tick()
    assert etree.fromstring(feed.read_bytes()).findtext(updated) == "2025-06-02T18:45:30+09:00"


def test_repeat_never_stacks_a_second_instance_of_slow_work():
    """The daemon's polls (digests and the bounce mailbox) as APScheduler really runs
    them: work that outlasts its interval many times over is still one run, with no
    "maximum number of running instances" warning and no missed run."""
    import queue
    import threading

    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    from newsletter.scheduler import repeat

    scheduler = BackgroundScheduler(
        timezone=dt.UTC,
        executors={"default": ThreadPoolExecutor(1), "slow": ThreadPoolExecutor(1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    noise: list[int] = []
    scheduler.add_listener(lambda event: noise.append(event.code), EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)  # fmt: skip
    started: queue.Queue[int] = queue.Queue()
    release, stop = threading.Event(), threading.Event()
    log: list[str] = []

    def slow() -> None:
        log.append("start")
        started.put(log.count("start"))
        release.wait(60)
        log.append("end")

    repeat(scheduler, "slow", slow, 0.01, stop, dt.UTC, executor="slow")
    scheduler.start()
    try:
        assert started.get(timeout=60) == 1
        # A probe 50 intervals on, on the other thread: the scheduler reaches it
        # only after handling every due time of "slow" before it (in order), so
        # by then an interval job would have hit its instance limit.
        probe = threading.Event()
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)
        scheduler.add_job(probe.set, "date", run_date=later)
        assert probe.wait(60)
        release.set()
        assert started.get(timeout=60) == 2  # the next run comes after this one ended
        stop.set()
    finally:
        release.set()
        scheduler.shutdown(wait=True)
    assert noise == []
    assert log[:3] == ["start", "end", "start"]
