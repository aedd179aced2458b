"""The whole journey, through the real CLI: send, bounce, process, send again.

An issue goes out through a real SMTP server (aiosmtpd) to five subscribers,
each with its own VERP return path. The mail world answers: a Postfix DSN for
one (built from the envelope sender and headers the server really received), a
feedback-loop complaint for another, a vacation reply for a third, and an
unrelated message, all delivered into a real Dovecot mailbox. `newsletter
bounces process` reads it over IMAP; then every subscriber's state, the event
log, the mailbox, `status`, and who gets the next issue are checked. The
daemon's poll is checked on a Maildir.
"""

from __future__ import annotations

import email
import json
import shutil
import signal
from pathlib import Path

import pytest
from bounce_samples import BOUNCE_ADDRESS, fill, originals
from dovecot_server import PASSWORD, start_dovecot
from helpers import SAMPLE_DIGESTS, run_cli
from smtp_servers import Handler, start_server
from test_bounces_mailboxes import imap_client, read_imap
from test_daemon import Daemon

DAEMON_SECRET = "daemon-test-secret-0123456789"

SECRET = "journey-secret-0123456789abcdef"
READERS = [f"reader{i}@example.net" for i in range(1, 6)]
EDITIONS = ["ko", "en", "both", "ko", "en"]


@pytest.fixture(scope="module")
def dovecot():
    with start_dovecot() as server:
        yield server


def write_config(folder: Path, smtp_port: int, mailbox: str, **extra: str) -> Path:
    (folder / "digests").mkdir()
    for name in ("2025-04-04.txt", "2025-05-19.txt"):
        shutil.copy(SAMPLE_DIGESTS / name, folder / "digests" / name)
    path = folder / "config.yaml"
    path.write_text(
        "site:\n  base_url: https://papers.example.org/\n  timezone: Asia/Seoul\n"
        "paths:\n  digests: digests\n  public: public\n  state: state\n  outbox: outbox\n"
        "papers:\n  lookup: 'off'\n"
        "email:\n  transport: smtp\n  from: ML Papers <papers@example.org>\n"
        f"  bounce_address: {BOUNCE_ADDRESS}\n  bounce_limit: 1\n"
        f"  smtp:\n    host: 127.0.0.1\n    port: {smtp_port}\n    security: none\n"
        f"bounces:\n  mailbox: {mailbox}\n  password_env: BOUNCE_PASSWORD\n"
        + "".join(f"  {key}: {value}\n" for key, value in extra.items()),
        encoding="utf-8",
    )
    return path


def cli_ok(config: Path, *args: str, env: dict[str, str]) -> str:
    result = run_cli("--config", str(config), *args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_send_bounce_process_send_again(tmp_path, dovecot):
    env = {
        "NEWSLETTER_SECRET": SECRET,
        "BOUNCE_PASSWORD": PASSWORD,
        "SSL_CERT_FILE": str(dovecot.ca_file),  # Dovecot offers STARTTLS: trust its CA
    }
    handler = Handler()
    with start_server(handler) as smtp:
        config = write_config(tmp_path, smtp.port, dovecot.url("Journey"))
        for address, edition in zip(READERS, EDITIONS, strict=True):
            cli_ok(config, "subscribers", "add", address, "--edition", edition, env=env)
        cli_ok(config, "publish", "--date", "2025-04-04", "--force", env=env)

        received = {m.recipients[0]: m for m in handler.messages}
        assert sorted(received) == READERS
        senders = {m.sender for m in received.values()}
        assert len(senders) == 5  # one return path per delivery
        assert all(s.startswith("bounces+") and s.endswith("@example.org") for s in senders)
        for address, m in received.items():
            assert len(m.sender.partition("@")[0]) <= 64  # RFC 5321's local-part limit
            headers = email.message_from_bytes(m.data)
            unsubscribe = " ".join(headers["List-Unsubscribe"].split())
            token = unsubscribe.partition("token=")[2].partition(">")[0]
            assert f"<mailto:{BOUNCE_ADDRESS}?subject=unsubscribe%20{token}>" in unsubscribe
            assert address in headers["To"]

        # The mail world answers, into the bounce mailbox.
        def values(address):
            m = received[address]
            return {"@@VERP@@": m.sender, "@@RCPT@@": address} | originals(m.data)

        replies = {
            "dsn": fill("postfix-hard", values(READERS[0])),
            "arf": fill("arf-complaint", values(READERS[1])),
            "vacation": fill("vacation-rfc3834", values(READERS[2])),
            "unrelated": fill("unrelated", {}),
        }
        client = imap_client(dovecot)
        client.create_folder("Journey")
        for data in replies.values():
            client.append("Journey", data)
        client.logout()

        out = cli_ok(config, "bounces", "process", env=env)
        assert "4 messages read" in out
        assert "2 events recorded (0 already known), 3 moved to processed, 1 left untouched" in out

        states = {
            s["email"]: s["state"]
            for s in json.loads(cli_ok(config, "subscribers", "list", "--json", env=env))
        }
        assert states == {
            READERS[0]: "bounced",
            READERS[1]: "complained",
            READERS[2]: "active",  # a vacation reply is not a bounce
            READERS[3]: "active",
            READERS[4]: "active",
        }
        events = json.loads(cli_ok(config, "bounces", "list", "--json", env=env))
        assert [
            (e["kind"], e["email"], e["issue_date"], e["edition"], e["source"]) for e in events
        ] == [
            ("hard_bounce", READERS[0], "2025-04-04", "ko", "imap"),
            ("complaint", READERS[1], "2025-04-04", "en", "imap"),
        ]
        assert events[0]["status"] == "5.1.1" and "User unknown" in events[0]["diagnostic"]
        # The unrelated message is still there, unchanged; the rest were filed.
        assert read_imap(dovecot, "Journey") == [(replies["unrelated"], set())]
        assert len(read_imap(dovecot, "processed")) >= 3

        status = json.loads(cli_ok(config, "status", "--json", env=env))
        rates = status["bounces"]["2025-04-04"]
        assert (rates["mailed"], rates["hard_bounces"], rates["complaints"]) == (5, 1, 1)
        assert (rates["hard_bounce_rate"], rates["complaint_rate"]) == (20.0, 20.0)
        assert any("0.3 %" in w for w in status["warnings"])
        text = run_cli("--config", str(config), "status", env=env)
        assert "1 hard bounce (20.00 %)" in text.stdout and "warning:" in text.stderr

        # The next issue goes only to those still subscribed.
        handler.messages.clear()
        cli_ok(config, "publish", "--date", "2025-05-19", "--force", env=env)
        assert sorted(m.recipients[0] for m in handler.messages) == READERS[2:]

        # Processing again changes nothing.
        out = cli_ok(config, "bounces", "process", env=env)
        assert "1 message read" in out and "0 events recorded" in out


def test_reactivate_and_list_since(tmp_path):
    env = {"NEWSLETTER_SECRET": SECRET}
    box = tmp_path / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    with start_server(Handler()) as smtp:
        config = write_config(tmp_path, smtp.port, "maildir:Maildir")
        for address in READERS[:2]:
            cli_ok(config, "subscribers", "add", address, env=env)
        cli_ok(config, "publish", "--date", "2025-04-04", "--force", env=env)
        handler_messages = {m.recipients[0]: m for m in smtp.handler.messages}
    for name, address in (("postfix-hard", READERS[0]), ("arf-complaint", READERS[1])):
        m = handler_messages[address]
        data = fill(name, {"@@VERP@@": m.sender, "@@RCPT@@": address} | originals(m.data))
        (box / "new" / f"{name}.eml").write_bytes(data)
    cli_ok(config, "bounces", "process", env=env)

    refused = run_cli("--config", str(config), "subscribers", "reactivate", READERS[1], env=env)
    assert refused.returncode == 1 and "--force" in refused.stderr
    readd = run_cli(
        "--config", str(config), "subscribers", "add", READERS[1], "--reactivate", env=env
    )
    assert readd.returncode == 1 and "reactivate --force" in readd.stderr
    out = cli_ok(config, "subscribers", "reactivate", READERS[1], "--force", env=env)
    assert "active (was complained" in out
    out = cli_ok(config, "subscribers", "reactivate", READERS[0], env=env)
    assert "active (was bounced, 1 hard bounce)" in out
    again = run_cli("--config", str(config), "subscribers", "reactivate", READERS[0], env=env)
    assert again.returncode == 1 and "nothing to undo" in again.stderr

    events = json.loads(cli_ok(config, "bounces", "list", "--json", env=env))
    # Files are read in name order: arf-complaint.eml, then postfix-hard.eml.
    assert [e["kind"] for e in events] == ["complaint", "hard_bounce", "reactivated", "reactivated"]
    assert events[2]["source"] == "cli" and "(forced)" in events[2]["diagnostic"]
    assert (
        json.loads(cli_ok(config, "bounces", "list", "--since", "2999-01-01", "--json", env=env))
        == []
    )
    text = run_cli("--config", str(config), "bounces", "list", env=env)
    assert (
        "4 events" in text.stderr
        and "hard_bounce\treader1@example.net\t2025-04-04 ko" in text.stdout
    )
    bad = run_cli("--config", str(config), "bounces", "list", "--since", "yesterday", env=env)
    assert bad.returncode == 2


def test_process_without_a_mailbox_is_a_config_error(tmp_path):
    (tmp_path / "config.yaml").write_text("email:\n  bounce_address: bounces@example.org\n")
    result = run_cli("--config", str(tmp_path / "config.yaml"), "bounces", "process")
    assert result.returncode == 2
    assert "bounces.mailbox is not set" in result.stderr and "Traceback" not in result.stderr


def test_the_daemon_polls_the_bounce_mailbox(tmp_path):
    box = tmp_path / "Maildir"
    for sub in ("tmp", "new", "cur"):
        (box / sub).mkdir(parents=True)
    env = {"NEWSLETTER_SECRET": DAEMON_SECRET}  # what test_daemon.Daemon runs with
    with start_server(Handler()) as smtp:
        config = write_config(tmp_path, smtp.port, "maildir:Maildir", poll_minutes="0.01")
        cli_ok(config, "subscribers", "add", READERS[0], env=env)
        cli_ok(config, "publish", "--date", "2025-04-04", "--force", env=env)
        m = smtp.handler.messages[0]
    dsn = fill("postfix-hard", {"@@VERP@@": m.sender, "@@RCPT@@": READERS[0]} | originals(m.data))
    unrelated = fill("unrelated", {})
    (box / "new" / "unrelated").write_bytes(unrelated)
    daemon = Daemon(config, tmp_path / "daemon.log")
    try:
        (box / "new" / "dsn").write_bytes(dsn)
        moved = box / ".processed" / "new" / "dsn"
        daemon.wait_for(moved.exists, timeout=60, what="the daemon to file the DSN")
        assert daemon.stop(signal.SIGTERM) == 0
    finally:
        daemon.kill()
    assert (box / "new" / "unrelated").read_bytes() == unrelated
    events = json.loads(cli_ok(config, "bounces", "list", "--json", env=env))
    assert [(e["kind"], e["email"]) for e in events] == [("hard_bounce", READERS[0])]
    assert any(e.get("event") == "bounces_processed" for e in daemon.events())


def test_bounces_list_shows_what_is_known_of_the_issue(tmp_path):
    """An event may know its issue (a week, a day) without an edition: no 'None' in the list."""
    from newsletter.bounces.policy import record
    from newsletter.config import load_config
    from newsletter.model import Edition, Week
    from newsletter.store import Store
    from newsletter.store.bounces import BounceEvent, EventKind

    config = write_config(tmp_path, 25, "maildir:Maildir")
    env = {"NEWSLETTER_SECRET": "s" * 32}
    cli_ok(config, "subscribers", "add", "김@example.org", env=env)
    events = [
        BounceEvent(EventKind.SOFT, "김@example.org", "webhook", "a", Week(2025, 14)),
        BounceEvent(EventKind.SOFT, "김@example.org", "webhook", "b", None),
        BounceEvent(EventKind.SOFT, "김@example.org", "webhook", "c", Week(2025, 15), Edition.KO),
    ]  # fmt: skip
    with Store.open(load_config(config)) as store:
        for event in events:
            record(store, event, bounce_limit=3)
    text = run_cli("--config", str(config), "bounces", "list", env=env)
    rows = [line.split("\t")[3] for line in text.stdout.splitlines()]
    assert rows == ["2025-W14", "-", "2025-W15 ko"] and "None" not in text.stdout
    assert "3 events" in text.stderr
