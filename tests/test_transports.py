"""Transports against real SMTP servers (aiosmtpd) and the outbox folder."""

from __future__ import annotations

import datetime as dt
import itertools
import ssl

import pytest
import real_parts
from smtp_servers import Handler, free_port, mail_config, start_server

from newsletter.errors import NewsletterError
from newsletter.transports import make_transport
from newsletter.transports.failures import PermanentFailure, TemporaryFailure
from newsletter.transports.files import FileTransport, outbox_name
from newsletter.transports.rate import RateLimiter
from newsletter.transports.smtp import SmtpTransport

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture(scope="module")
def mail_tls():
    """(server context, client context) from a throw-away CA (trustme)."""
    trustme = real_parts.import_real("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def smtp_settings(tmp_path, server, **smtp):
    base = {"host": server.host, "port": server.port, "security": "none", "timeout": 5}
    return mail_config(tmp_path, transport="smtp", smtp=base | smtp).email.smtp


def test_file_transport_overwrites_on_rerun(tmp_path):
    config = mail_config(tmp_path)
    transport = make_transport(config, dt.date(2025, 4, 4))
    assert isinstance(transport, FileTransport)
    transport.open()
    transport.send("a@example.org", "Kim@example.org", MESSAGE)
    transport.send("a@example.org", "Kim@example.org", MESSAGE)
    transport.send("a@example.org", "a/../b@example.org", MESSAGE)
    files = sorted(p.name for p in (tmp_path / "outbox" / "2025-04-04").iterdir())
    assert len(files) == 2 and "kim@example.org.eml" in files
    assert all("/" not in name and not name.startswith(".") for name in files)
    assert outbox_name("a/b@x.org") != outbox_name("a_b@x.org")


def test_smtp_send_and_reuse(tmp_path):
    with start_server() as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.open()
        for i in range(5):
            transport.send("papers@example.org", f"u{i}@example.org", MESSAGE)
        transport.close()
    assert len(server.handler.messages) == 5
    assert server.handler.messages[0].data.endswith(b"body\r\n")


def test_smtp_reconnects_after_max_per_connection(tmp_path):
    with start_server() as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server, max_per_connection=2))
        for i in range(5):
            transport.send("papers@example.org", f"u{i}@example.org", MESSAGE)
        transport.close()
    assert len(server.handler.messages) == 5


def test_smtp_4xx_is_temporary_and_5xx_permanent(tmp_path):
    handler = Handler(reject={"bad@example.org": 550}, temp_fail_first=1)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        with pytest.raises(TemporaryFailure) as temp:
            transport.send("papers@example.org", "u@example.org", MESSAGE)
        assert temp.value.code == 451
        with pytest.raises(PermanentFailure) as perm:
            transport.send("papers@example.org", "bad@example.org", MESSAGE)
        assert perm.value.code == 550 and perm.value.hard_bounce
        assert "mailbox unavailable" in perm.value.reply
        transport.send("papers@example.org", "u@example.org", MESSAGE)  # connection still usable
        transport.close()
    assert len(handler.messages) == 1


def test_smtp_dropped_connection_is_temporary_then_reconnects(tmp_path):
    handler = Handler(drop_on={2})
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.send("papers@example.org", "u1@example.org", MESSAGE)
        with pytest.raises(TemporaryFailure) as lost:
            transport.send("papers@example.org", "u2@example.org", MESSAGE)
        assert lost.value.code is None
        transport.send("papers@example.org", "u2@example.org", MESSAGE)
        transport.close()
    assert [m.recipients for m in handler.messages] == [["u1@example.org"], ["u2@example.org"]]


def test_connection_refused_is_a_clear_error(tmp_path):
    port = free_port()
    settings = mail_config(
        tmp_path, transport="smtp", smtp={"host": "127.0.0.1", "port": port, "security": "none"}
    ).email.smtp
    with pytest.raises(NewsletterError) as error:
        SmtpTransport(settings).open()
    assert f"127.0.0.1:{port}" in error.value.message and "refused" in error.value.message
    assert error.value.hint


@pytest.mark.parametrize(
    ("smtp", "says", "hint"),
    [
        ({"security": "starttls"}, "does not offer STARTTLS", "email.smtp.security to ssl"),
        (
            {"username": "u", "password_env": "SMTP_PW"},
            "does not offer AUTH (login) without TLS",
            "remove email.smtp.username",
        ),
    ],
    ids=["starttls", "auth"],
)
def test_a_missing_extension_is_named_once(tmp_path, monkeypatch, smtp, says, hint):
    """A plain relay (no STARTTLS, no AUTH) asked for one: one clear sentence, the right hint."""
    monkeypatch.setenv("SMTP_PW", "secret")
    with start_server() as server, pytest.raises(NewsletterError) as error:
        SmtpTransport(smtp_settings(tmp_path, server, **smtp)).open()
    message = error.value.message
    assert message == f"SMTP server 127.0.0.1:{server.port} {says}"
    assert hint in (error.value.hint or "")
    if "username" not in smtp:
        assert "username" not in (error.value.hint or "")


def test_starttls_and_auth(tmp_path, mail_tls, monkeypatch):
    server_ctx, client_ctx = mail_tls
    monkeypatch.setenv("MAIL_TEST_PASSWORD", "s3cret")
    with start_server(tls_context=server_ctx, auth=("papers", "s3cret")) as server:
        settings = smtp_settings(
            tmp_path,
            server,
            security="starttls",
            username="papers",
            password_env="MAIL_TEST_PASSWORD",
        )
        transport = SmtpTransport(settings, ssl_context=client_ctx)
        transport.open()
        transport.send("papers@example.org", "u@example.org", MESSAGE)
        transport.close()
        assert len(server.handler.messages) == 1

        monkeypatch.setenv("MAIL_TEST_PASSWORD", "wrong")
        with pytest.raises(NewsletterError) as error:
            SmtpTransport(settings, ssl_context=client_ctx).open()
        assert f"{server.host}:{server.port}" in error.value.message
        assert (
            "refused the login" in error.value.message and "MAIL_TEST_PASSWORD" in error.value.hint
        )

        # An untrusted certificate (default trust store) is a clear TLS error.
        monkeypatch.setenv("MAIL_TEST_PASSWORD", "s3cret")
        with pytest.raises(NewsletterError, match="TLS with SMTP server"):
            SmtpTransport(settings).open()

        # Without STARTTLS the server refuses to go on.
        plain = smtp_settings(
            tmp_path, server, security="none", username="papers", password_env="MAIL_TEST_PASSWORD"
        )
        with pytest.raises(NewsletterError, match=f"{server.port}"):
            SmtpTransport(plain).open()


class FakeClock:
    """A monotonic clock that moves only when the limiter sleeps.

    The rates below are powers of two, so every time is exact in binary floating
    point (a real clock moves on by itself; this one would otherwise stall short
    of a token by a rounding error).
    """

    def __init__(self) -> None:
        self.now = 1024.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_limiter_spaces_messages_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(256, burst=1, clock=clock, sleep=clock.sleep)
    sent_at = []
    for _ in range(41):
        limiter.take()
        sent_at.append(clock.now)
    # The first goes at once (a full bucket of one); then one every 1/256 s.
    assert sent_at[0] == 1024.0
    assert sent_at[-1] - sent_at[0] == 40 / 256
    assert [b - a for a, b in itertools.pairwise(sent_at)] == [1 / 256] * 40


def test_rate_limiter_burst_then_rate_and_refill_is_capped():
    clock = FakeClock()
    limiter = RateLimiter(64, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.take()
    assert clock.sleeps == []  # the burst goes out at once
    limiter.take()
    assert clock.sleeps == [1 / 64]
    clock.now += 3600  # an hour idle refills the bucket to 5, not to 180,000
    for _ in range(5):
        limiter.take()
    assert len(clock.sleeps) == 1
    limiter.take()
    assert len(clock.sleeps) == 2


def test_rate_limiter_default_burst_is_a_tenth_of_a_second():
    assert RateLimiter(100).capacity == 10
    assert RateLimiter(5).capacity == 1  # at least one message


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_limiter_without_a_limit_never_waits(rate):
    clock = FakeClock()

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s with rate {rate}")

    limiter = RateLimiter(rate, clock=clock, sleep=no_sleep)
    for _ in range(10_000):
        limiter.take()
    assert clock.now == 1024.0


@pytest.mark.parametrize("pipelining", [True, False])
def test_smtp_transaction_pipelined_or_not_is_byte_exact(tmp_path, pipelining):
    # aiosmtpd does not offer PIPELINING but reads pipelined commands in order:
    # forcing it exercises the one-write MAIL/RCPT/DATA path and its error replies.
    message = b"From: a@example.org\r\nSubject: s\r\n\r\n.dot first\r\nmid\r\n..two dots\r\n.\r\n"
    handler = Handler(reject={"bad@example.org": 550}, temp_fail_first=1)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.open()
        transport._pipelining = pipelining
        with pytest.raises(TemporaryFailure) as temp:  # 451 at the end of DATA
            transport.send("papers@example.org", "u0@example.org", message)
        assert temp.value.code == 451
        transport.send("papers@example.org", "u1@example.org", message)
        with pytest.raises(PermanentFailure) as perm:  # 550 at RCPT: DATA is refused too
            transport.send("papers@example.org", "bad@example.org", message)
        assert perm.value.code == 550 and perm.value.hard_bounce
        stuffed = message.replace(b"\n.", b"\n..")
        transport.send("papers@example.org", "u2@example.org", stuffed, dot_stuffed=True)
        transport.send("papers@example.org", "u3@example.org", message.rstrip(b"\r\n"))
        transport.close()
    assert [m.recipients for m in handler.messages] == [
        ["u1@example.org"],
        ["u2@example.org"],
        ["u3@example.org"],
    ]
    assert handler.messages[0].data == message
    assert handler.messages[1].data == message  # pre-stuffed: the server un-stuffs it
    assert handler.messages[2].data == message.rstrip(b"\r\n") + b"\r\n"


def test_smtp_sender_refused_is_fatal(tmp_path):
    class RefuseSender(Handler):
        async def handle_MAIL(self, server, session, envelope, address, options):
            return "553 5.7.1 sender not allowed"

    with start_server(RefuseSender()) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.open()
        transport._pipelining = True
        with pytest.raises(PermanentFailure) as refused:
            transport.send("papers@example.org", "u@example.org", MESSAGE)
        assert refused.value.fatal and refused.value.code == 553
        transport.close()


@pytest.mark.parametrize("security", ["none", "starttls"])
def test_nagle_is_off_on_every_connection(tmp_path, mail_tls, security):
    # With Nagle on, the last TLS record of each message waits for a delayed
    # ACK (~40 ms): STARTTLS ran at a tenth of plain SMTP's rate.
    import socket

    server_ctx, client_ctx = mail_tls
    tls = server_ctx if security == "starttls" else None
    with start_server(tls_context=tls) as server:
        transport = SmtpTransport(
            smtp_settings(tmp_path, server, security=security), ssl_context=client_ctx
        )
        transport.open()
        transport.send("papers@example.org", "u@example.org", MESSAGE)
        sock = transport._conn.sock
        assert isinstance(sock, ssl.SSLSocket) == (security == "starttls")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        transport.close()
        assert len(server.handler.messages) == 1


# --- the next message's envelope sent ahead (RFC 2920 across messages) ---------

SENDER = "papers@example.org"


def _numbered(count: int) -> list[bytes]:
    return [MESSAGE.replace(b"hi", f"hi {i}".encode()) for i in range(count)]


def _spy_writes(transport: SmtpTransport) -> list[bytes]:
    """What the transport writes on its connection (the real socket still gets it)."""
    writes: list[bytes] = []
    conn = transport._conn
    assert conn is not None
    real = conn.send

    def send(data):
        writes.append(data)
        return real(data)

    conn.send = send
    return writes


def test_the_next_envelope_goes_with_the_data_one_write_per_message(tmp_path):
    handler = Handler(pipelining=True)
    messages = _numbered(6)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.open()
        writes = _spy_writes(transport)
        for i, message in enumerate(messages):
            then = (SENDER, f"u{i + 1}@example.org", messages[i + 1]) if i < 5 else None
            transport.send(SENDER, f"u{i}@example.org", message, then=then)
        # The first envelope, then one write per message: its data and the
        # next message's MAIL, RCPT and DATA (two writes per message without).
        assert len(writes) == 1 + len(messages)
        assert writes[1].endswith(
            b".\r\nMAIL FROM:<papers@example.org> SIZE=%d\r\n"
            b"RCPT TO:<u1@example.org>\r\nDATA\r\n" % len(messages[1])
        )
        transport.close()
    assert [m.recipients for m in handler.messages] == [[f"u{i}@example.org"] for i in range(6)]
    assert [m.data for m in handler.messages] == messages
    assert handler.ehlos == 1


def test_a_session_lost_after_a_message_was_accepted_keeps_it_sent(tmp_path):
    """The relay accepts a message ("250") and hangs up before answering the
    envelope sent ahead with it: that message is sent (it must never be sent
    again); the next one goes on a new session, once."""
    handler = Handler(pipelining=True, hang_up_after={1})
    m = _numbered(3)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        # No refusal here: the relay said 250 (before, "connection lost", and
        # a rerun sent it twice).
        transport.send(SENDER, "u0@example.org", m[0], then=(SENDER, "u1@example.org", m[1]))
        transport.send(SENDER, "u1@example.org", m[1], then=(SENDER, "u2@example.org", m[2]))
        transport.send(SENDER, "u2@example.org", m[2])
        transport.close()
    assert [msg.data for msg in handler.messages] == m
    assert handler.ehlos == 2


def test_a_refusal_of_the_envelope_sent_ahead_is_that_messages_own(tmp_path):
    handler = Handler(pipelining=True, reject={"bad@example.org": 550})
    m = _numbered(3)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.send(SENDER, "u0@example.org", m[0], then=(SENDER, "bad@example.org", m[1]))
        with pytest.raises(PermanentFailure) as refused:
            transport.send(SENDER, "bad@example.org", m[1], then=(SENDER, "u2@example.org", m[2]))
        assert refused.value.code == 550 and refused.value.hard_bounce
        transport.send(SENDER, "u2@example.org", m[2])
        transport.close()
    assert [msg.recipients for msg in handler.messages] == [["u0@example.org"], ["u2@example.org"]]
    assert handler.ehlos == 1  # the session went on


@pytest.mark.parametrize(
    "reply", ["554 5.6.0 Transaction failed", "451 4.3.0 Temporary lookup failure"]
)
def test_a_message_refused_after_its_data_keeps_the_envelope_sent_ahead(tmp_path, reply):
    # The second message is refused after its data, when the third's envelope
    # has gone ahead and been accepted: that refusal is the second message's,
    # and the third goes out on the same session, once.
    handler = Handler(pipelining=True, refuse_content=(b"hi 1", reply))
    m = _numbered(3)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.send(SENDER, "u0@example.org", m[0], then=(SENDER, "u1@example.org", m[1]))
        with pytest.raises((PermanentFailure, TemporaryFailure)) as refused:
            transport.send(SENDER, "u1@example.org", m[1], then=(SENDER, "u2@example.org", m[2]))
        assert refused.value.code == int(reply[:3])
        transport.send(SENDER, "u2@example.org", m[2])
        transport.close()
    assert [msg.data for msg in handler.messages] == [m[0], m[2]]
    assert handler.ehlos == 1


@pytest.mark.parametrize("then_what", ["another message", "close"])
def test_an_envelope_sent_ahead_and_not_followed_sends_nothing(tmp_path, then_what):
    # After a stop the worker drops the job whose envelope went ahead: DATA was
    # accepted, and only hanging up ends it without a message (a "." would
    # send an empty one, a QUIT would be message text).
    handler = Handler(pipelining=True)
    m = _numbered(3)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.send(SENDER, "u0@example.org", m[0], then=(SENDER, "u1@example.org", m[1]))
        if then_what == "another message":
            transport.send(SENDER, "u2@example.org", m[2])
        transport.close()
        handler.wait_until(lambda h: h.sessions_open == 0, "every session closed")
    expected = [m[0], m[2]] if then_what == "another message" else [m[0]]
    assert [msg.data for msg in handler.messages] == expected
    assert handler.ehlos == len(expected)  # the open transaction's session was hung up


def test_a_session_limit_met_by_an_envelope_sent_ahead_is_learned(tmp_path):
    # 421 at MAIL for the fourth message of a session: that MAIL went ahead with
    # the third's data. The third is delivered; the fourth goes on a new session;
    # later sessions take 3 messages each without a refusal.
    handler = Handler(pipelining=True, session_messages=3)
    m = _numbered(8)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        for i, message in enumerate(m):
            then = (SENDER, f"u{i + 1}@example.org", m[i + 1]) if i < 7 else None
            transport.send(SENDER, f"u{i}@example.org", message, then=then)
        transport.close()
    assert [msg.data for msg in handler.messages] == m
    assert handler.closed_sessions == 1 and transport.per_session == 3


def test_a_session_closed_at_an_envelope_sent_ahead_is_not_used_again(tmp_path):
    # 421 at MAIL for the third message, whose envelope went ahead; the caller
    # then sends another message instead (the third was dropped): it goes on a
    # new session at once, not as a "connection lost" on the closed one.
    handler = Handler(pipelining=True, session_messages=2)
    m = _numbered(4)
    with start_server(handler) as server:
        transport = SmtpTransport(smtp_settings(tmp_path, server))
        transport.send(SENDER, "u0@example.org", m[0])
        transport.send(SENDER, "u1@example.org", m[1], then=(SENDER, "u2@example.org", m[2]))
        transport.send(SENDER, "u3@example.org", m[3])
        transport.close()
    assert [msg.data for msg in handler.messages] == [m[0], m[1], m[3]]
    assert handler.ehlos == 2
