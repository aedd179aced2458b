"""The bounce tests' world: a store with subscribers who were sent an issue, and
the sample messages of tests/data/bounces filled in for one of them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import DATA
from smtp_servers import sample_digest

from newsletter.bounces.verp import Verp
from newsletter.config import config_from_dict
from newsletter.mail import build_edition_email
from newsletter.model import Edition
from newsletter.store import Store
from newsletter.store.ledger import DeliveryState, Outcome
from newsletter.tokens import UNSUBSCRIBE, sign_token

SAMPLES = DATA / "bounces"
SECRET = "bounce-test-secret-0123456789"
DATE = dt.date(2025, 4, 4)
NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
BOUNCE_ADDRESS = "bounces@example.org"
READERS = [f"reader{i}@example.net" for i in range(1, 6)]


def bounce_config(tmp_path: Path, **extra: Any) -> Any:
    """SMTP-free config with a bounce address; `extra` merges into the raw dict."""
    raw: dict[str, Any] = {
        "site": {"base_url": "https://papers.example.org/", "timezone": "Asia/Seoul"},
        "paths": {"state": "state", "public": "public", "outbox": "outbox"},
        "papers": {"lookup": "off"},
        "email": {"from": "ML Papers <papers@example.org>", "bounce_address": BOUNCE_ADDRESS},
    }
    for section, values in extra.items():
        raw.setdefault(section, {})
        if isinstance(values, dict):
            raw[section].update(values)
        else:
            raw[section] = values
    return config_from_dict(raw, base=tmp_path)


@dataclass
class World:
    """Five subscribers (all editions) who were sent the issue of DATE."""

    config: Any
    store: Store
    secret: bytes

    def verp(self, email: str, edition: Edition | None = None) -> str:
        sub = self.store.subscribers.get(email)
        assert sub is not None and sub.id is not None
        edition = edition or sub.edition
        return Verp(self.secret, BOUNCE_ADDRESS).address(sub.id, f"{DATE:%Y%m%d}", edition.value)

    def token(self, email: str) -> str:
        return sign_token(self.secret, UNSUBSCRIBE, email)

    def sent_message(self, email: str) -> bytes:
        """The message this subscriber got (as the workers build it)."""
        sub = self.store.subscribers.get(email)
        assert sub is not None
        message = build_edition_email(self.config, sample_digest(), sub.edition, now=NOW)
        return message.personalise(email, sub.name, self.token(email))

    def sample(self, name: str, email: str, **overrides: str) -> bytes:
        """tests/data/bounces/NAME.eml filled in for `email` (see its README)."""
        values = {
            "@@VERP@@": self.verp(email),
            "@@RCPT@@": email,
            "@@TOKEN@@": self.token(email),
            "@@UNSUB_TO@@": BOUNCE_ADDRESS,
        } | originals(self.sent_message(email))
        return fill(name, values | overrides)


def originals(message: bytes) -> dict[str, str]:
    """The @@ORIGINAL@@ and @@ORIGINAL_HEADERS@@ values for a message we sent."""
    original = message.replace(b"\r\n", b"\n").decode("utf-8")
    return {"@@ORIGINAL_HEADERS@@": original.partition("\n\n")[0], "@@ORIGINAL@@": original}


def fill(name: str, values: dict[str, str]) -> bytes:
    """tests/data/bounces/NAME.eml with its placeholders replaced, CRLF line endings."""
    text = (SAMPLES / f"{name}.eml").read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    assert "@@" not in text, f"unfilled placeholder in {name}.eml"
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def make_world(tmp_path: Path, **extra: Any) -> World:
    """The config, a store with READERS subscribed and the issue of DATE sent to them."""
    config = bounce_config(tmp_path, **extra)
    store = Store.open(config)
    editions = list(Edition)
    for i, email in enumerate(READERS):
        store.subscribers.add(email, editions[i % 3], f"Reader {i + 1}")
    subs = store.subscribers.list()
    store.ledger.start_deliveries(DATE, subs)
    store.ledger.record(
        DATE,
        [Outcome(s.edition, s.email, DeliveryState.SENT, "250 ok") for s in subs],
        config.email.bounce_limit,
    )
    return World(config, store, SECRET.encode())
