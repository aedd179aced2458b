"""`newsletter run` as a real subprocess with short intervals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from helpers import SAMPLE_DIGESTS, run_cli

from newsletter.digest import format_digest, read_digest


def today_seoul() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Seoul")).date()


def digest_text(date: dt.date, sample: str = "2025-04-04.txt", title_suffix: str = "") -> str:
    digest = read_digest(SAMPLE_DIGESTS / sample).digest
    entries = list(digest.entries)
    entries[0] = dataclasses.replace(entries[0], title=entries[0].title + title_suffix)
    return format_digest(dataclasses.replace(digest, date=date, entries=tuple(entries)))


def write_config(folder: Path, extra: str = "") -> Path:
    (folder / "digests").mkdir(exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(
        "site:\n  base_url: https://example.org/papers/\n  timezone: Asia/Seoul\n"
        "paths:\n  digests: digests\n  public: public\n  state: state\n  outbox: outbox\n"
        "papers:\n  lookup: off\n"
        "schedule:\n  send_time: '00:00'\n  poll_seconds: 0.2\n  settle_seconds: 0.6\n" + extra,
        encoding="utf-8",
    )
    return path


def sending_today(
    folder: Path, server: Any, connections: int, editions: list[Any], timeout: float = 5
) -> Path:
    """A daemon config that mails through the SMTP `server` with `connections`
    connections (each waiting at most `timeout` seconds for a reply), one
    subscriber per item of `editions` (reader0@example.org, ...), and today's
    digest (Seoul) in the digests folder; the config's path."""
    from newsletter.store import Store
    from newsletter.store.database import Database

    config = write_config(
        folder,
        "email:\n  transport: smtp\n  postal_address: 1 Example Road, Seoul\n  smtp:\n"
        f"    host: {server.host}\n    port: {server.port}\n    security: none\n"
        f"    connections: {connections}\n    timeout: {timeout:g}\n",
    )
    (folder / "state").mkdir()
    with Store(Database(f"sqlite:///{folder / 'state' / 'newsletter.db'}")) as store:
        for i, edition in enumerate(editions):
            store.subscribers.add(f"reader{i}@example.org", edition)
    (folder / "digests" / "today.txt").write_text(digest_text(today_seoul()), encoding="utf-8")
    return config


class Daemon:
    def __init__(self, config: Path, log: Path, *options: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["NEWSLETTER_SECRET"] = "daemon-test-secret-0123456789"
        self.log_path = log
        self.log_file = log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "newsletter",
                "--config",
                str(config),
                "run",
                "--log-format",
                "json",
                *options,
            ],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def events(self) -> list[dict]:
        events = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def wait_for(self, predicate, timeout: float = 120, what: str = "") -> None:
        """Until predicate() holds (checked as the log grows); timeout: a hang guard."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; log:\n{self.log_path.read_text(encoding='utf-8')}"
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


@pytest.fixture
def daemon_factory():
    started: list[Daemon] = []

    def start(config: Path, log: Path, *options: str) -> Daemon:
        daemon = Daemon(config, log, *options)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.kill()


def put(path: Path, text: str) -> None:
    """Write a digest whole (a rename): the daemon never sees it half written."""
    staging = path.parent.parent / f"{path.name}.part"
    staging.write_text(text, encoding="utf-8")
    staging.rename(path)


def eml_files(folder: Path, date: dt.date) -> list[Path]:
    return sorted((folder / "outbox" / date.isoformat()).glob("*.eml"))


def test_daemon_publishes_emails_once_and_survives_bad_files(tmp_path, daemon_factory):
    config = write_config(tmp_path)
    date = today_seoul()
    add = run_cli(
        "--config", str(config), "subscribers", "add", "reader@example.org", "--edition", "both"
    )
    assert add.returncode == 0, add.stderr
    daemon = daemon_factory(config, tmp_path / "run.log")
    daemon.wait_for(
        lambda: any(e.get("event") == "started" for e in daemon.events()), what="start-up"
    )

    # The digest arrives whole (renamed into place); test_scheduler_units checks,
    # with a clock of its own, that a file still being written waits to settle.
    path = tmp_path / "digests" / "today.txt"
    put(path, digest_text(date))
    page = tmp_path / "public" / "ko" / date.isoformat() / "index.html"
    daemon.wait_for(page.exists, what="the issue page")
    daemon.wait_for(lambda: len(eml_files(tmp_path, date)) == 1, what="the email")
    assert not any(e.get("event") == "bad_digest" for e in daemon.events())
    assert (tmp_path / "public" / "feeds" / "ko" / "atom.xml").exists()
    first_mail = eml_files(tmp_path, date)[0]
    first_bytes = first_mail.read_bytes()

    # A change after the email went out: the site follows, the email is not resent.
    # The daemon says so in the tick that publishes the change; the same tick
    # then finds the issue emailed. (The final checks below, after the daemon
    # has stopped, cover every later tick.)
    put(path, digest_text(date, title_suffix=" (revised)"))
    daemon.wait_for(
        lambda: any(e.get("event") == "changed_after_email" for e in daemon.events()),
        what="the update to be noticed",
    )
    assert "(revised)" in page.read_text(encoding="utf-8")
    assert first_mail.read_bytes() == first_bytes

    # A bad file and a duplicate date: logged with file and line, nothing published.
    put(tmp_path / "digests" / "bad.txt", "2025년 2월 30일\n")
    put(tmp_path / "digests" / "dup.txt", digest_text(date))

    def bad_digest_messages() -> list[str]:
        return [e["message"] for e in daemon.events() if e.get("event") == "bad_digest"]

    daemon.wait_for(
        lambda: (
            any("bad.txt:1: impossible date" in m for m in bad_digest_messages())
            and any(
                "dup.txt:1: another digest has the same date" in m for m in bad_digest_messages()
            )
            and any(
                "today.txt:1: another digest has the same date" in m for m in bad_digest_messages()
            )
        ),
        what="bad file errors",
    )
    assert daemon.process.poll() is None

    # A second daemon on the same state folder is refused.
    second = run_cli("--config", str(config), "run")
    assert second.returncode == 1
    assert "already using" in second.stderr

    assert daemon.stop() == 0
    assert eml_files(tmp_path, date) == [first_mail] and first_mail.read_bytes() == first_bytes
    assert sum(e.get("event") == "sending" for e in daemon.events()) == 1
    assert any(e.get("event") == "stopped" for e in daemon.events())


def test_sigterm_during_sending_then_restart_sends_each_exactly_once(tmp_path, daemon_factory):
    from smtp_servers import Handler, start_server

    from newsletter.model import Edition

    # After 20 messages the server holds every reply: the SIGTERM lands mid-send
    # however loaded the machine; the replies go out once the daemon has begun
    # to stop (its stop flag is set before it logs "stopping"), so it finishes
    # and records the messages in flight. From then on it hands out no more
    # work: each connection holds at most 64 jobs, far fewer than 300.
    handler = Handler(hold_after=20)
    subscribers = 300
    with start_server(handler) as server:
        editions = [list(Edition)[i % 3] for i in range(subscribers)]
        config = sending_today(tmp_path, server, 2, editions, timeout=300)

        first = daemon_factory(config, tmp_path / "run1.log")
        handler.wait_until(lambda h: h.held == 2, "a held reply on each connection")
        first.process.send_signal(signal.SIGTERM)
        first.wait_for(
            lambda: any(e.get("event") == "stopping" for e in first.events()),
            what="the daemon to begin stopping",
        )
        handler.gate.set()
        assert first.stop(signal.SIGTERM) == 0
        sent_before = len(handler.messages)
        assert sent_before < subscribers, "SIGTERM did not land mid-send"
        assert any(e.get("event") == "stopped" for e in first.events())
        handler.hold_after = None

        second = daemon_factory(config, tmp_path / "run2.log")
        second.wait_for(
            lambda: any(e.get("event") == "sent" for e in second.events()),
            what="the rest to be sent",
        )
        assert second.stop() == 0

    counts = handler.count_by_recipient()
    assert set(counts) == {f"reader{i}@example.org" for i in range(subscribers)}
    # A clean stop finishes and records the messages in flight: no duplicates at all.
    assert max(counts.values()) == 1, sent_before


def test_run_ignores_editor_leftovers_and_lists_them_with_v(tmp_path, daemon_factory):
    """An Emacs auto-save of the day's digest must not make both files 'duplicate date'."""
    config = write_config(tmp_path)
    folder = tmp_path / "digests"
    text = digest_text(dt.date(2025, 4, 4))
    (folder / "issue.txt").write_text(text, encoding="utf-8")
    (folder / "#issue.txt#").write_text(text + " edited", encoding="utf-8")
    (folder / ".issue.txt.swp").write_bytes(b"b0VIM 9.0\x00\x00")
    (folder / "issue.txt~").write_text(text, encoding="utf-8")
    daemon = daemon_factory(config, tmp_path / "run.log", "-v")
    page = tmp_path / "public" / "ko" / "2025-04-04" / "index.html"
    daemon.wait_for(page.exists, what="the issue page")
    daemon.wait_for(
        lambda: len([e for e in daemon.events() if e.get("event") == "skipped"]) == 3,
        what="the skipped files",
    )
    assert daemon.stop() == 0
    events = daemon.events()
    skipped = {Path(e["file"]).name: e["reason"] for e in events if e.get("event") == "skipped"}
    assert skipped == {
        "#issue.txt#": "Emacs auto-save file",
        ".issue.txt.swp": "Vim swap file",
        "issue.txt~": "backup file",
    }
    assert not [e for e in events if e.get("event") in ("bad_digest", "error")]
