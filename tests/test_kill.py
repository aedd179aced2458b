"""kill -9 in the middle of sending, then rerun: everyone ends with one copy.

The sender is the real CLI (`newsletter publish`) in a subprocess, against an
aiosmtpd server in this process that takes a little time per message, so that
the kill lands mid-send. Only messages that were accepted but not yet written
to the ledger may arrive twice: the one in flight on each connection, and the
group commit being gathered (a message or two at this rate).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import yaml
from smtp_servers import DATA, Handler, start_server

from newsletter.model import Edition
from newsletter.store import Store
from newsletter.store.database import Database

CONNECTIONS = 2
SUBSCRIBERS = 120


def smtp_project(tmp_path, server, subscribers: int) -> list[str]:
    """Config, subscribers and the 'publish' command line for a real SMTP server."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "paths": {"digests": str(DATA), "state": "state", "outbox": "outbox"},
                "papers": {"lookup": "off"},
                "email": {
                    "transport": "smtp",
                    "from": "ML Papers <papers@example.org>",
                    "smtp": {
                        "host": server.host,
                        "port": server.port,
                        "security": "none",
                        "connections": CONNECTIONS,
                        "timeout": 5,
                    },
                },
            }
        ),
        encoding="utf-8",
    )
    (tmp_path / "state").mkdir()
    with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
        for i in range(subscribers):
            store.subscribers.add(f"reader{i}@example.org", list(Edition)[i % 3])
    return [
        sys.executable,
        "-m",
        "newsletter",
        "--config",
        str(config_file),
        "publish",
        "--date",
        "2025-04-04",
        "--force",
    ]


def test_kill_then_rerun_sends_each_once(tmp_path):
    handler = Handler(delay=0.04)
    with start_server(handler) as server:
        args = smtp_project(tmp_path, server, SUBSCRIBERS)
        env = os.environ | {"NEWSLETTER_SECRET": "kill-test-secret"}

        first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while len(handler.messages) < 30 and first.poll() is None:
            assert time.monotonic() < deadline, "the sender never got going"
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(0.3)  # a message whose DATA arrived before the kill is still accepted
        accepted = set(handler.count_by_recipient())
        assert 0 < len(accepted) < SUBSCRIBERS, "kill did not land mid-send"
        with Store(Database(f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}")) as store:
            ledger = store.ledger.deliveries_for(dt.date(2025, 4, 4))
        recorded = {d.email for d in ledger if d.state == "sent"}
        # Marked sent only after the server accepted it; written while sending.
        assert recorded and recorded <= accepted
        in_flight = accepted - recorded

        second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stderr
        assert "0 failed" in second.stdout and "0 left" in second.stdout

    counts = handler.count_by_recipient()
    print(f"killed after {len(accepted)} accepted, {len(in_flight)} not yet in the ledger")
    # Exactly one copy each, except the messages accepted but not yet recorded at
    # the kill (in flight per connection, or in the group commit being written).
    assert counts == {
        f"reader{i}@example.org": 2 if f"reader{i}@example.org" in in_flight else 1
        for i in range(SUBSCRIBERS)
    }
    # At this rate (~50 messages/s) a group commit holds a message or two.
    assert len(in_flight) <= 2 * CONNECTIONS + 2, in_flight


def test_two_concurrent_publishers_never_double_send(tmp_path):
    handler = Handler(delay=0.02)
    with start_server(handler) as server:
        send = smtp_project(tmp_path, server, 60)
        env = os.environ | {"NEWSLETTER_SECRET": "lock-test-secret"}
        first = subprocess.Popen(send, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not handler.messages and first.poll() is None:
            assert time.monotonic() < deadline, "the first sender never got going"
            time.sleep(0.005)
        second = subprocess.run(send, env=env, capture_output=True, text=True, timeout=60)
        _, first_err = first.communicate(timeout=60)
        assert first.returncode == 0, first_err
        assert second.returncode == 1
        assert "another process is sending the 2025-04-04 issue" in second.stderr
        assert "Traceback" not in second.stderr
    counts = handler.count_by_recipient()
    assert len(counts) == 60 and max(counts.values()) == 1
