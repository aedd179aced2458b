"""SIGTERM is a normal stop wherever a send can run: publish and send-test here
(the daemon's: tests/test_daemon.py).

systemd, `docker stop` and `timeout` stop a process with SIGTERM. It must be
handled like Ctrl-C: the messages in flight are answered and recorded, so a
rerun sends nobody a second copy. Each test runs the real CLI in a subprocess
against an aiosmtpd server that holds one message until the test lets it go:
the signal lands while that message is in flight, synchronised on the server
having it (not on time), and the message is answered only once the process
has shown it took the signal (it says "stopping", or it is gone).
"""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

from processes import Watched
from smtp_servers import Handler, smtp_project, start_server

from newsletter.store import Store
from newsletter.store.database import Database

DATE = dt.date(2025, 4, 4)
SECRET = {"NEWSLETTER_SECRET": "sigterm-test-secret"}


def ledger_sent(folder: Path) -> set[str]:
    with Store(Database(f"sqlite:///{folder / 'state' / 'newsletter.db'}")) as store:
        return {d.email for d in store.ledger.deliveries_for(DATE) if d.state == "sent"}


def test_sigterm_during_publish_records_the_messages_in_flight(tmp_path):
    handler = Handler(hold_after=19, hold_count=1)  # message 20: taken, its 250 held
    with start_server(handler) as server:
        config = smtp_project(tmp_path, server, 60)
        try:
            first = Watched(config, "publish", "--date", DATE.isoformat(), "--force", env=SECRET)
            handler.wait_until(lambda h: h.held == 1, "the 20th message")
            first.process.send_signal(signal.SIGTERM)
            first.wait_for_line("stopping")
        finally:
            handler.gate.set()  # the held message is answered 250 now
        code, _, stderr = first.finish()
        assert code == 143, stderr
        assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr
        accepted = set(handler.count_by_recipient())
        assert 20 <= len(accepted) < 60, "SIGTERM did not land mid-send"
        # Every message the server accepted is in the ledger: nothing to send twice.
        assert ledger_sent(tmp_path) == accepted

        second = Watched(config, "publish", "--date", DATE.isoformat(), "--force", env=SECRET)
        code, _, stderr = second.finish()
        assert code == 0, stderr
    counts = handler.count_by_recipient()
    assert counts == {f"reader{i}@example.org": 1 for i in range(60)}  # 0 lost, 0 duplicated


def test_sigterm_during_send_test_is_a_clean_stop(tmp_path):
    handler = Handler(hold_after=0, hold_count=1)
    with start_server(handler) as server:
        config = smtp_project(tmp_path, server, 0)
        try:
            proof = Watched(
                config,
                "send-test",
                "--date",
                DATE.isoformat(),
                "--to",
                "editor@example.org",
                env=SECRET,
            )
            handler.wait_until(lambda h: h.held == 1, "the test message")
            proof.process.send_signal(signal.SIGTERM)
            code, _, stderr = proof.finish()
        finally:
            handler.gate.set()
    assert code == 143, stderr
    assert "stopped (SIGTERM)" in stderr and "Traceback" not in stderr
