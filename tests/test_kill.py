"""kill -9 in the middle of sending, then rerun: everyone ends with one copy.

The sender is the real CLI (`newsletter publish`) in a subprocess, against an
aiosmtpd server in this process. Only messages that were accepted but not yet
written to the ledger may arrive twice: the one in flight on each connection,
and the group commit being gathered.

Nothing here waits on time: the tests wait for what the server sees (messages,
held replies, closed sessions) and what the ledger holds.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from smtp_servers import DATA, Handler, start_server

from newsletter.model import Edition
from newsletter.store import Store
from newsletter.store.database import Database

CONNECTIONS = 2
SUBSCRIBERS = 120
DATE = dt.date(2025, 4, 4)


def smtp_project(
    tmp_path,
    server,
    subscribers: int,
    *,
    preferences=None,
    command: tuple[str, ...] = ("--date", DATE.isoformat(), "--force"),
) -> list[str]:
    """Config, subscribers and the 'publish' command line for a real SMTP server.

    `preferences(i)`: subscriber i's cadence and topics (default: daily, all);
    `command`: what follows `publish`. The SMTP timeout is long: a test may
    hold a reply at the gate while the machine is loaded, and a client
    timeout would make a second copy.
    """
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "paths": {
                    "digests": str(DATA),
                    "state": "state",
                    "outbox": "outbox",
                    "public": "public",
                },
                "papers": {"lookup": "off"},
                "email": {
                    "transport": "smtp",
                    "from": "ML Papers <papers@example.org>",
                    "smtp": {
                        "host": server.host,
                        "port": server.port,
                        "security": "none",
                        "connections": CONNECTIONS,
                        "timeout": 300,
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "state").mkdir()
    with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
        store.subscribers.add_many(
            (
                f"reader{i}@example.org",
                list(Edition)[i % 3],
                "",
                *((preferences(i),) if preferences else ()),
            )
            for i in range(subscribers)
        )
    return [sys.executable, "-m", "newsletter", "--config", str(config_file), "publish", *command]


def ledger_sent(tmp_path: Path) -> set[str]:
    with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
        return {d.email for d in store.ledger.deliveries_for(DATE) if d.state == "sent"}


def wait_for_ledger(tmp_path: Path, count: int, process: subprocess.Popen) -> set[str]:
    """Until the sender's ledger holds `count` sent rows (the file is the event)."""
    deadline = time.monotonic() + 120  # only a guard against a hang
    while len(sent := ledger_sent(tmp_path)) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the ledger never reached {count}: {len(sent)}"
        time.sleep(0.01)
    return sent


def kill_and_settle(process: subprocess.Popen, handler: Handler) -> None:
    """SIGKILL the sender, then wait until the server has closed every session.

    Its worker processes die with it (PR_SET_PDEATHSIG); aiosmtpd cancels a
    session's handler when its connection is lost, so after the last session
    ends nothing more can be accepted: handler.messages is final.
    """
    process.send_signal(signal.SIGKILL)
    process.wait()
    handler.wait_until(lambda h: h.sessions_open == 0, "every session closed after the kill")


def assert_one_copy_each_but(handler: Handler, in_flight: set[str]) -> None:
    """Exactly one copy each, except two of each message accepted but unrecorded."""
    assert handler.count_by_recipient() == {
        f"reader{i}@example.org": 2 if f"reader{i}@example.org" in in_flight else 1
        for i in range(SUBSCRIBERS)
    }


def start_sender(tmp_path, server) -> tuple[list[str], dict[str, str], subprocess.Popen]:
    """The project, and its first `publish` started in the background."""
    args = smtp_project(tmp_path, server, SUBSCRIBERS)
    env = os.environ | {"NEWSLETTER_SECRET": "kill-test-secret"}
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return args, env, first


def rerun(args: list[str], env: dict[str, str]) -> None:
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "0 failed" in second.stdout and "0 left" in second.stdout


def test_kill_then_rerun_sends_each_once(tmp_path):
    handler = Handler(delay=0.01)
    with start_server(handler) as server:
        args, env, first = start_sender(tmp_path, server)
        handler.wait_until(lambda h: len(h.messages) >= 30, "30 messages before the kill")
        kill_and_settle(first, handler)
        accepted = set(handler.count_by_recipient())
        assert 30 <= len(accepted) < SUBSCRIBERS, "kill did not land mid-send"
        recorded = ledger_sent(tmp_path)
        # Marked sent only after the server accepted it; written while sending.
        assert recorded and recorded <= accepted
        in_flight = accepted - recorded
        rerun(args, env)

    print(f"killed after {len(accepted)} accepted, {len(in_flight)} not yet in the ledger")
    # The messages accepted but not yet recorded at the kill (in flight per
    # connection, or in the group commit being written) arrive twice, no other.
    assert_one_copy_each_but(handler, in_flight)


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
def test_kill_with_every_reply_in_flight_repeats_exactly_those(tmp_path, pipelining):
    # After 30 messages the server accepts each message but holds its "250": the
    # kill then lands with one accepted, unrecorded message per connection, and
    # everything before them in the ledger. Those and only those arrive twice.
    # With PIPELINING the next message's envelope waits behind that reply: its
    # message was never sent, so it arrives once, after the rerun.
    handler = Handler(hold_after=30, pipelining=pipelining)
    with start_server(handler) as server:
        args, env, first = start_sender(tmp_path, server)
        handler.wait_until(lambda h: h.held == CONNECTIONS, "a held reply on each connection")
        recorded = wait_for_ledger(tmp_path, 30, first)
        kill_and_settle(first, handler)
        handler.gate.set()
        accepted = set(handler.count_by_recipient())
        assert len(accepted) == 30 + CONNECTIONS
        assert recorded == ledger_sent(tmp_path) and len(recorded) == 30 and recorded < accepted
        in_flight = accepted - recorded
        rerun(args, env)

    assert_one_copy_each_but(handler, in_flight)
    assert len(in_flight) == CONNECTIONS


def test_two_concurrent_publishers_never_double_send(tmp_path):
    # The first publisher's first message is accepted but its reply held: it is
    # mid-send, holding the sending lock, for as long as the second one
    # takes to start (however loaded the machine). Only that reply is held, so
    # a second sender that ignored the lock would send freely, not hang.
    handler = Handler(hold_after=0, hold_count=1)
    with start_server(handler) as server:
        send = smtp_project(tmp_path, server, 60)
        env = os.environ | {"NEWSLETTER_SECRET": "lock-test-secret"}
        first = subprocess.Popen(send, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            handler.wait_until(lambda h: h.held >= 1, "the first sender's first message")
            second = subprocess.run(send, env=env, capture_output=True, text=True, timeout=300)
        finally:
            handler.gate.set()
        _, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err
        assert second.returncode == 1, second.stdout
        assert "another process is sending the 2025-04-04 issue" in second.stderr
        assert "Traceback" not in second.stderr
    counts = handler.count_by_recipient()
    assert len(counts) == 60 and max(counts.values()) == 1
