"""Real SMTP servers on localhost (aiosmtpd) for the mail tests.

One configurable handler covers the behaviours we need: record messages, answer
451 for the first tries, 550 for some recipients, drop the connection on chosen
messages, sleep per message, hold messages at a gate until the test opens it;
and the relay faults of a bad day: refuse the message itself after DATA,
allow only so many recipients or messages per session (452 4.5.3 / 421), a
session that answers 451 to everything once it has taken some messages.
`start_server` adds STARTTLS + AUTH when asked, and passes aiosmtpd options
(e.g. `data_size_limit`, which refuses too large a SIZE at MAIL with 552).

Tests synchronise on what the server sees, never on time: `Handler.wait_until`
wakes on every message, DATA command, held message and closed session.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import real_parts

real_parts.import_real("aiosmtpd")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    at: float = 0.0  # time.monotonic() when the server accepted it


@dataclass
class Handler:
    """Records accepted messages; misbehaves as configured."""

    reject: dict[str, int] = field(default_factory=dict)  # recipient -> 5xx at RCPT
    temp_fail_first: int = 0  # answer 451 at DATA for the first N DATA commands
    drop_on: set[int] = field(default_factory=set)  # drop the connection on these DATA numbers
    # Accept these DATA numbers ("250"), then hang up (a reset, nothing more
    # written) at the next command, before answering it.
    hang_up_after: set[int] = field(default_factory=set)
    delay: float = 0.0  # seconds per message, before it is recorded
    # After DATA, this reply for every message containing the marker (b"": all).
    refuse_content: tuple[bytes, str] | None = None
    session_recipients: int = 0  # RCPTs per session, then 452 4.5.3 (0: no limit)
    session_messages: int = 0  # messages per session, then 421 at MAIL and hang up
    sick_after: int = 0  # messages per session, then 451 at DATA for the rest of it
    # Messages after the first `hold_after` DATA commands are accepted (recorded)
    # but their "250" waits until `gate` is set; `held` counts those waiting now.
    hold_after: int | None = None
    hold_count: int | None = None  # hold only this many (None: all after hold_after)
    gate: threading.Event = field(default_factory=threading.Event)
    held: int = 0
    messages: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)  # answered 451 at DATA
    data_calls: int = 0
    closed_sessions: int = 0  # 421s given for session_messages
    rcpt_calls: Counter[str] = field(default_factory=Counter)
    sessions_open: int = 0
    sessions_closed: int = 0
    # Offer PIPELINING (RFC 2920) in the EHLO reply. aiosmtpd does not by
    # itself, but reads pipelined commands in order: with it, the client sends
    # MAIL/RCPT/DATA in one write and the next message's envelope with the
    # data of the one before.
    pipelining: bool = False
    ehlos: int = 0  # sessions a client opened (aiosmtpd's own readiness check sends none)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlos += 1
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if getattr(session, "hang_up", False):
            server.transport.abort()  # the "250" before went out; this reply never does
            return "421 4.3.0 gone"
        if self.session_messages and _count(session, "messages") >= self.session_messages:
            with self.lock:
                self.closed_sessions += 1
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Too many messages in this session, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        with self.lock:
            self.rcpt_calls[address] += 1
        if self.session_recipients:
            if _count(session, "recipients") >= self.session_recipients:
                return "452 4.5.3 Error: too many recipients"
            _count(session, "recipients", 1)
        code = self.reject.get(address)
        if code:
            return f"{code} 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.changed:
            self.data_calls += 1
            number = self.data_calls
            self.changed.notify_all()
        if number in self.drop_on:
            server.transport.close()
            return "421 closing"
        if number <= self.temp_fail_first:
            with self.lock:
                self.refused.append(
                    Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                )
            return "451 4.3.0 try again later"
        if self.sick_after and _count(session, "messages") >= self.sick_after:
            return "451 4.3.0 Temporary lookup failure"
        if self.refuse_content and self.refuse_content[0] in envelope.original_content:
            return self.refuse_content[1]
        if self.delay:
            await asyncio.sleep(self.delay)
        _count(session, "messages", 1)
        with self.changed:
            self.messages.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    time.monotonic(),
                )
            )
            self.changed.notify_all()
        if self._holds(number):
            await self._wait_at_gate()
        if number in self.hang_up_after:
            session.hang_up = True
        return "250 2.0.0 queued"

    def _holds(self, number: int) -> bool:
        if self.hold_after is None or number <= self.hold_after:
            return False
        return self.hold_count is None or number <= self.hold_after + self.hold_count

    async def _wait_at_gate(self) -> None:
        with self.changed:
            self.held += 1
            self.changed.notify_all()
        try:
            # The server's event loop must go on serving the other connections.
            while not self.gate.is_set():
                await asyncio.sleep(0.002)
        finally:
            with self.changed:
                self.held -= 1
                self.changed.notify_all()

    def session_event(self, opened: bool) -> None:
        with self.changed:
            if opened:
                self.sessions_open += 1
            else:
                self.sessions_open -= 1
                self.sessions_closed += 1
            self.changed.notify_all()

    def wait_until(self, predicate: Any, what: str, timeout: float = 120) -> None:
        """Block until predicate(handler) holds; checked on every change the server sees.

        `timeout` only stops a broken test from hanging: nothing waits on time.
        """
        with self.changed:
            if not self.changed.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(
                    f"the SMTP server never saw {what}: {len(self.messages)} accepted, "
                    f"{self.data_calls} DATA, {self.held} held, {self.sessions_open} open"
                )

    def count_by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(r for m in self.messages for r in m.recipients)


def _count(session: Any, name: str, add: int = 0) -> int:
    """A per-connection counter kept on aiosmtpd's session object."""
    value = getattr(session, f"test_{name}", 0) + add
    setattr(session, f"test_{name}", value)
    return value


class _TrackedSMTP(SMTP):
    """aiosmtpd's SMTP session, telling the handler when a connection opens and ends.

    aiosmtpd cancels a session's handler at connection_lost, so once every
    session has closed, `handler.messages` is final.
    """

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.event_handler.session_event(opened=True)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.event_handler.session_event(opened=False)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _TrackedSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class Server:
    host: str
    port: int
    handler: Handler
    controller: Controller


def _authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


@contextlib.contextmanager
def start_server(
    handler: Handler | None = None,
    *,
    tls_context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
    **options: Any,
) -> Iterator[Server]:
    """An SMTP server on 127.0.0.1; with tls_context it requires STARTTLS (and AUTH).

    `options` go to aiosmtpd's SMTP (e.g. data_size_limit=30000).
    """
    handler = handler or Handler()
    kwargs: dict[str, Any] = {"enable_SMTPUTF8": True, **options}
    if tls_context is not None:
        kwargs |= {"tls_context": tls_context, "require_starttls": True}
    if auth is not None:
        kwargs |= {
            "authenticator": _authenticator(*auth),
            "auth_required": True,
            "auth_require_tls": tls_context is not None,
        }
    port = free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield Server("127.0.0.1", port, handler, controller)
    finally:
        controller.stop()


# --- small helpers shared by the mail tests -----------------------------------

DATA = __import__("pathlib").Path(__file__).parent / "data" / "digests"


def mail_config(tmp_path: Any, **email: Any) -> Any:
    """A Config rooted in tmp_path with email settings overridden."""
    from newsletter.config import config_from_dict

    raw: dict[str, Any] = {
        "site": {"base_url": "https://papers.example.org/"},
        "email": {"from": "ML Papers <papers@example.org>", **email},
        "paths": {"state": "state", "outbox": "outbox"},
        "papers": {"lookup": "off"},
    }
    return config_from_dict(raw, tmp_path)


def sample_digest(name: str = "2025-04-04.txt") -> Any:
    from newsletter.digest import read_digest

    return read_digest(DATA / name).digest


def smtp_project(
    folder: Any, server: Server, subscribers: int, *, digests: Any = None, **settings: Any
) -> Any:
    """A project folder for the real CLI: config.yaml (transport smtp to `server`,
    2 connections unless `settings` say otherwise) and `subscribers` active
    readers (reader0..., editions in turn). Returns the config file's path.

    `digests`: the digests folder (default: the sample digests); `settings`
    also takes top-level config sections, e.g. schedule={...}.
    """
    import yaml

    from newsletter.model import Edition
    from newsletter.store import Store
    from newsletter.store.database import Database

    smtp = {"host": server.host, "port": server.port, "security": "none", "timeout": 10}
    smtp |= {"connections": 2} | settings.pop("smtp", {})
    config = {
        "paths": {"digests": str(digests or DATA), "state": "state", "outbox": "outbox"},
        "email": {"transport": "smtp", "from": "ML Papers <papers@example.org>", "smtp": smtp},
        "papers": {"lookup": "off"},
        **settings,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    (folder / "state").mkdir(exist_ok=True)
    with Store(Database(f"sqlite:///{folder / 'state' / 'newsletter.db'}")) as store:
        editions = list(Edition)
        store.subscribers.add_many(
            (f"reader{i}@example.org", editions[i % 3], "") for i in range(subscribers)
        )
    return path
