"""Every distinct message has its own Message-ID; a retry of a delivery keeps its own.

Mailbox providers that deduplicate by Message-ID would otherwise hide a
corrected test, or the real issue after a test (RFC 5322 3.6.4). Real SMTP
(aiosmtpd) and the real CLI.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy

from helpers import run_cli
from smtp_servers import Handler, mail_config, sample_digest, start_server

from newsletter.deliver.issue import deliver_issue
from newsletter.model import Edition
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.web.subscriptions import build_confirmation

NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
SECRET = "test-secret-0123456789"


def message_id(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=email.policy.default)
    value = message["Message-ID"]
    assert value and value.startswith("<") and value.endswith(">"), value
    return str(value)


def test_two_test_sends_and_the_issue_have_three_ids(project):
    address = "reader@example.org"
    with start_server() as server:
        config = project / "config.yaml"
        config.write_text(
            config.read_text(encoding="utf-8")
            + "email:\n  from: ML Papers <papers@example.org>\n  transport: smtp\n  smtp:\n"
            f"    host: {server.host}\n    port: {server.port}\n    security: none\n",
            encoding="utf-8",
        )
        env = {"NEWSLETTER_SECRET": SECRET}

        def cli(*args: str) -> str:
            result = run_cli(*args, cwd=project, env=env)
            assert result.returncode == 0, result.stderr
            return result.stdout

        cli("subscribers", "add", address, "--edition", "both")
        first = cli("send-test", "--date", "2025-04-04", "--to", address)
        cli("send-test", "--date", "2025-04-04", "--to", address)  # a corrected proof
        cli("publish", "--date", "2025-04-04", "--force")
    assert [m.recipients for m in server.handler.messages] == [[address]] * 3
    ids = [message_id(m.data) for m in server.handler.messages]
    assert len(set(ids)) == 3, ids
    assert ids[0] in first  # the CLI says which id the proof has
    assert all(i.endswith("@example.org>") for i in ids)


def test_a_delivery_retried_after_451_keeps_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    handler = Handler(temp_fail_first=2)  # the first two DATA commands: 451
    with start_server(handler) as server:
        smtp = {"host": server.host, "port": server.port, "security": "none", "connections": 1}
        config = mail_config(tmp_path, transport="smtp", smtp=smtp)
        store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
        store.subscribers.add("a@example.org", Edition.KO)
        store.subscribers.add("b@example.org", Edition.EN)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=(0.01,))
    assert report.sent == 2
    refused = {m.recipients[0]: message_id(m.data) for m in handler.refused}
    accepted = {m.recipients[0]: message_id(m.data) for m in handler.messages}
    assert set(refused) == {"a@example.org", "b@example.org"}
    assert accepted == refused  # the retry is recognisably the same message
    assert accepted["a@example.org"] != accepted["b@example.org"]


def test_a_delivery_resent_by_a_later_run_keeps_its_id(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    handler = Handler(temp_fail_first=10**6)
    with start_server(handler) as server:
        smtp = {"host": server.host, "port": server.port, "security": "none"}
        config = mail_config(tmp_path, transport="smtp", smtp=smtp)
        store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
        store.subscribers.add("a@example.org", Edition.BOTH)
        first = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=(0.01,))
        assert first.pending_left == 1
        handler.temp_fail_first = 0
        assert deliver_issue(config, store, sample_digest(), now=NOW).sent == 1
    (accepted,) = handler.messages
    assert {message_id(m.data) for m in handler.refused} == {message_id(accepted.data)}


def test_every_confirmation_mail_is_a_new_message_with_content_language(tmp_path):
    config = mail_config(tmp_path)
    ids = set()
    for kind in ("confirm", "confirm", "already", "already"):
        _, data = build_confirmation(
            config, b"k", "reader@example.org", Edition.KO, kind, NOW.astimezone(dt.UTC)
        )
        message = email.message_from_bytes(data, policy=email.policy.default)
        ids.add(message_id(data))
        # Like the issue mails (Content-Language: ko / en): Korean first, then English.
        assert message["Content-Language"] == "ko, en"
        assert "구독" in message.get_body(("plain",)).get_content()
    assert len(ids) == 4
