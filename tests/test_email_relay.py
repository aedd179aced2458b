"""8BITMIME (RFC 6152): what goes to a relay depends on what it advertises.

A relay that advertises 8BITMIME gets the 8bit form with BODY=8BITMIME on
MAIL FROM; one that does not gets only 7-bit bytes (quoted-printable or
base64 parts), with the same content. The file transport writes the 8bit form.
Real aiosmtpd servers; aiosmtpd advertises 8BITMIME unless it decodes data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from smtp_servers import free_port, mail_config, sample_digest

from newsletter.deliver.issue import deliver_issue
from newsletter.mail import build_edition_email
from newsletter.model import Edition
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.tokens import UNSUBSCRIBE, sign_token
from newsletter.transports.files import FileTransport
from newsletter.transports.smtp import SmtpTransport

NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
SECRET = "relay-test-secret-0123456789"


@dataclass
class Recorder:
    """Keeps each message with the options its MAIL FROM carried."""

    messages: list[tuple[list[str], str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(
                (list(envelope.mail_options), envelope.rcpt_tos[0], envelope.original_content)
            )
        return "250 2.0.0 queued"


@contextlib.contextmanager
def relay(eightbitmime: bool):
    recorder = Recorder()
    port = free_port()
    # aiosmtpd leaves 8BITMIME out of its EHLO when it decodes the data.
    controller = Controller(recorder, hostname="127.0.0.1", port=port, decode_data=not eightbitmime)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def config_for(tmp_path, port):
    smtp = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 10}
    return mail_config(tmp_path, transport="smtp", smtp=smtp)


@pytest.mark.parametrize("eightbitmime", [True, False], ids=["8bitmime", "7bit-relay"])
def test_the_transport_learns_8bitmime_from_ehlo(tmp_path, eightbitmime):
    with relay(eightbitmime) as (port, _recorder):
        transport = SmtpTransport(config_for(tmp_path, port).email.smtp)
        assert transport.eightbitmime is False  # not known before connecting
        transport.open()
        try:
            assert transport.eightbitmime is eightbitmime
        finally:
            transport.close()


@pytest.mark.parametrize("eightbitmime", [True, False], ids=["8bitmime", "7bit-relay"])
def test_each_relay_gets_the_form_it_takes(tmp_path, monkeypatch, eightbitmime):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
    for index, edition in enumerate(Edition):
        store.subscribers.add(f"user{index}@example.org", edition, "독자")
    digest = sample_digest()
    with relay(eightbitmime) as (port, recorder):
        config = config_for(tmp_path, port)
        report = deliver_issue(config, store, digest, now=NOW)
    assert report.sent == 3 and len(recorder.messages) == 3
    emails = {e: build_edition_email(config, digest, e, now=NOW) for e in Edition}
    for options, address, data in recorder.messages:
        edition = list(Edition)[int(address[4])]
        token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)
        # Byte for byte the form for this relay (the server un-stuffed the dots).
        assert data == emails[edition].personalise(address, "독자", token, eightbit=eightbitmime)
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        encodings = {part["Content-Transfer-Encoding"] for part in parsed.iter_parts()}
        if eightbitmime:
            assert "BODY=8BITMIME" in options and encodings == {"8bit"}
        else:
            assert "BODY=8BITMIME" not in options and data.isascii()
            assert encodings <= {"quoted-printable", "base64"}
        # The same content either way.
        other = emails[edition].personalise(address, "독자", token, eightbit=not eightbitmime)
        other_parsed = email.message_from_bytes(other, policy=email.policy.default)
        assert [p.get_content() for p in parsed.iter_parts()] == [
            p.get_content() for p in other_parsed.iter_parts()
        ]


def test_the_file_transport_writes_what_an_8bitmime_relay_gets(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    assert FileTransport(tmp_path).eightbitmime is True
    config = mail_config(tmp_path)
    store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
    store.subscribers.add("reader@example.org", Edition.BOTH, "독자")
    deliver_issue(config, store, sample_digest(), now=NOW)
    (eml,) = (tmp_path / "outbox" / "2025-04-04").glob("*.eml")
    from newsletter.tokens import DEV_SECRET

    token = sign_token(DEV_SECRET, UNSUBSCRIBE, "reader@example.org")
    message = build_edition_email(config, sample_digest(), Edition.BOTH, now=NOW)
    assert eml.read_bytes() == message.personalise("reader@example.org", "독자", token)
    assert b"Content-Transfer-Encoding: 8bit" in eml.read_bytes()
