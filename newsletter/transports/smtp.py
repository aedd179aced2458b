"""The SMTP transport (email.transport: smtp): one reused connection to the relay.

`SmtpTransport` speaks RFC 5321 through smtplib, with PIPELINING (RFC 2920),
8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531) and SIZE (RFC 1870) when the relay
offers them; every refusal becomes a `failures.SendFailure` classified by
`smtp_replies`. It pushes bytes and knows nothing of campaigns. With
PIPELINING, a caller that knows its next message has that message's envelope
sent with the data of the one before (`send(..., then=...)`): one round trip
per message.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.smtp_replies import (
    Scope,
    Stage,
    Verdict,
    classify,
    learned_limit,
    session_worn_out,
)
from newsletter.transports.failures import PermanentFailure, SendFailure, TemporaryFailure

if TYPE_CHECKING:
    from newsletter.config_email import SmtpConfig
    from newsletter.transports.rate import RateLimiter


# Why a message to an address with a non-ASCII local part was not sent.
NO_SMTPUTF8 = (
    "the relay does not support SMTPUTF8 (RFC 6531), which an address "
    "whose part before the @ is not ASCII needs"
)


_IDLE_CHECK_SECONDS = 5.0


class _Ahead:
    """The envelope of the next message, sent ahead with the data of the one
    before (`SmtpTransport.send(..., then=...)`): for which message (the same
    bytes object), and its outcome: accepted up to DATA's 354 (`refused` is
    None: the transaction is open, only its data may follow), or refused."""

    __slots__ = ("message", "recipient", "refused", "sender")

    def __init__(
        self, sender: str, recipient: str, message: bytes, refused: _Refused | None
    ) -> None:
        self.sender = sender
        self.recipient = recipient
        self.message = message
        self.refused = refused

    def matches(self, sender: str, recipient: str, message: bytes) -> bool:
        return message is self.message and sender == self.sender and recipient == self.recipient

    @property
    def open(self) -> bool:
        return self.refused is None


class SmtpTransport:
    """One reused SMTP connection; reconnects after max_per_connection messages.

    Pipelines MAIL/RCPT/DATA when the server offers PIPELINING (`pipelining`
    False turns that off).
    """

    pipelining = True

    def __init__(
        self,
        settings: SmtpConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.limiter = limiter
        self._conn: smtplib.SMTP | None = None
        self._count = 0
        self._last_used = 0.0
        # The relay advertised 8BITMIME (RFC 6152), known once connected.
        self.eightbitmime = False
        self._utf8 = False
        self._pipelining = False
        self._size = False
        # Messages per session: email.smtp.max_per_connection, or less once
        # the relay has shown its own limit (see send).
        self.per_session = settings.max_per_connection
        self._streak = 0  # temporary refusals in a row on this connection
        # The next message's envelope, sent ahead (see send's `then`).
        self._ahead: _Ahead | None = None

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def open(self) -> None:
        """Connect, secure and log in; NewsletterError naming host:port on failure."""
        if self._conn is None:
            self._conn = self._connect()

    def _context(self) -> ssl.SSLContext:
        # create_default_context honours $SSL_CERT_FILE for a private CA.
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        hint_port = {"ssl": 465, "starttls": 587, "none": 25}[s.security]
        conn: smtplib.SMTP | None = None
        step = "connect"  # which command a server that lacks an extension refused
        try:
            if s.security == "ssl":
                conn = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._context())
            else:
                conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            _no_delay(conn)
            conn.ehlo()
            if s.security == "starttls":
                step = "STARTTLS"
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.username:
                step = "AUTH"
                conn.login(s.username, s.password() or "")
            self.eightbitmime = conn.has_extn("8bitmime")
            self._utf8 = conn.has_extn("smtputf8")
            self._pipelining = self.pipelining and conn.has_extn("pipelining")
            self._size = conn.has_extn("size")
            self._count = 0
            self._streak = 0
            self._last_used = time.monotonic()
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            _quit(conn)
            raise NewsletterError(
                f"SMTP server {self.where} refused the login for {s.username!r}: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check email.smtp.username and the password in "
                f"${s.password_env or 'the variable email.smtp.password_env names'}",
            ) from None
        except smtplib.SMTPNotSupportedError:
            _quit(conn)
            if step == "STARTTLS":
                raise NewsletterError(
                    f"SMTP server {self.where} does not offer STARTTLS",
                    hint="set email.smtp.security to ssl (port 465) if the server speaks TLS "
                    "from the start, or to none for a relay on a trusted network",
                ) from None
            raise NewsletterError(
                f"SMTP server {self.where} does not offer AUTH (login)"
                + (" without TLS" if s.security == "none" else ""),
                hint="servers offer AUTH only over TLS: set email.smtp.security to starttls "
                "or ssl; or remove email.smtp.username if the relay needs no login",
            ) from None
        except ssl.SSLError as exc:
            _quit(conn)
            raise NewsletterError(
                f"TLS with SMTP server {self.where} failed: {exc.reason or exc}",
                hint=f"check email.smtp.security ({s.security}) and port (usually {hint_port}); "
                "for a private CA export SSL_CERT_FILE=/path/to/ca.pem",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quit(conn)
            what = (
                "refused the connection"
                if isinstance(exc, ConnectionRefusedError)
                else f"failed: {exc}"
            )
            if isinstance(exc, socket.gaierror):
                what = f"cannot be resolved: {exc}"
            raise NewsletterError(
                f"SMTP server {self.where} {what}",
                hint=f"check email.smtp.host and port (usually {hint_port} for "
                f"{s.security}) and that the server is running",
            ) from None

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        *,
        dot_stuffed: bool = False,
        then: tuple[str, str, bytes] | None = None,
    ) -> None:
        """Send one message; `dot_stuffed`: lines starting with '.' are doubled already.

        Every refusal is classified (`smtp_replies.classify`) and raised as a
        SendFailure carrying its scope. A session-level refusal (421, "too
        many recipients") ends the connection with QUIT; if the session had
        accepted messages, that number becomes this transport's messages per
        session (the relay's limit, learned) and the message is tried once at
        once on a new session. `TEMPORARY_STREAK` temporary refusals in a row
        also replace the connection, before the next message.

        `then`: the (sender, recipient, message) this caller sends next, if it
        knows. With PIPELINING, no rate limit and room left in the session,
        that message's MAIL, RCPT and DATA go out in the same write as this
        message's data (RFC 2920 3.1: message content may start a group, DATA
        ends it): one round trip per message instead of two. Its replies are
        kept for the next call: with the same message (the same bytes object)
        it sends only the data, or raises the refusal it got; with another
        message, an open transaction (DATA accepted) cannot be cancelled
        without sending a message, so the connection is closed without QUIT
        (the server discards an unfinished message) and a new one opened.
        """
        utf8 = _needs_smtputf8(sender, recipient)
        for first_try in (True, False):
            ahead, self._ahead = self._ahead, None
            if ahead is not None and not ahead.matches(sender, recipient, message):
                # Not the message whose envelope went ahead: an open transaction
                # is hung up, and a 421 to the envelope has closed the session.
                if ahead.refused is None or ahead.refused.closed:
                    self._drop()
                ahead = None
            if ahead is None:
                conn = self._ready(recipient)
                if utf8 and not self._utf8:
                    raise PermanentFailure(recipient, None, NO_SMTPUTF8, hard_bounce=False)
                if self.limiter is not None:
                    self.limiter.take()
            else:
                conn = self._conn  # type: ignore[assignment]
            try:
                if ahead is not None and ahead.refused is not None:
                    raise ahead.refused
                follow = then if first_try and self._may_send_ahead(then) else None
                self._transaction(
                    conn, sender, recipient, message, dot_stuffed, ahead is not None, follow
                )
            except _Refused as refused:
                verdict = classify(refused.stage, refused.code, refused.text)
                if verdict.scope is Scope.SESSION:
                    accepted = self._count
                    self._drop(polite=not refused.closed)
                    if verdict.session_limit and first_try and accepted > 0:
                        self.per_session = learned_limit(accepted, self.per_session)
                        continue  # the same message, on a new session
                elif not verdict.permanent:
                    self._streak += 1
                    if session_worn_out(self._streak):
                        self._drop(polite=True)
                raise _failure(recipient, refused, verdict) from None
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self._drop()
                raise TemporaryFailure(
                    recipient, None, f"connection lost: {exc}", scope=Scope.SESSION
                ) from None
            except BaseException:
                # Interrupted mid-transaction (Ctrl-C, SIGTERM): the session is in
                # an unknown state, so no polite QUIT later (it would wait for a reply).
                self._drop()
                raise
            self._count += 1
            self._streak = 0
            self._last_used = time.monotonic()
            return

    def _may_send_ahead(self, then: tuple[str, str, bytes] | None) -> bool:
        """Whether `then`'s envelope may go out with this message's data: the relay
        pipelines, nothing paces the messages (a rate limit would hold an open
        transaction), the session has room for both, and SMTPUTF8 is there if needed."""
        if then is None or not self._pipelining or self._count + 2 > self.per_session:
            return False
        if self.limiter is not None and self.limiter.rate > 0:
            return False
        sender, recipient, _ = then
        return self._utf8 or not _needs_smtputf8(sender, recipient)

    def _envelope(self, sender: str, recipient: str, message: bytes) -> bytes:
        """MAIL (with SMTPUTF8, SIZE and BODY=8BITMIME as they apply), RCPT and
        DATA of one message, as one write."""
        utf8 = _needs_smtputf8(sender, recipient)
        options = ["SMTPUTF8"] if utf8 else []
        if self._size:
            options.append(f"SIZE={len(message)}")
        if self.eightbitmime and not message.isascii():
            options.append("BODY=8BITMIME")  # RFC 6152: say so for 8bit bodies
        encoding = "utf-8" if utf8 else "ascii"
        extra = "".join(f" {option}" for option in options)
        return f"MAIL FROM:<{sender}>{extra}\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode(encoding)

    def _transaction(
        self,
        conn: smtplib.SMTP,
        sender: str,
        recipient: str,
        message: bytes,
        dot_stuffed: bool = False,
        opened: bool = False,
        then: tuple[str, str, bytes] | None = None,
    ) -> None:
        """MAIL, RCPT, DATA and the message; `_Refused` names the stage that failed.

        Written out rather than sendmail() for speed (measured, one connection
        into smtp-sink, 27 KB: ~4,000 msg/s at ~85 us CPU each, against ~2,000
        at ~285 us): with PIPELINING (RFC 2920) the three commands go out in one
        write and their replies are read together, two round trips per message
        instead of four; and dot-stuffing (smtplib: a regex over the whole
        message, ~200 us) is a bytes.replace, or nothing for a message
        prebuilt dot-stuffed (EditionEmail.for_smtp).

        `opened`: the envelope went ahead and DATA was accepted, only the data
        is left. `then`: the next message, whose envelope goes out with this
        data (see send); its replies are read here and kept in `_ahead`.
        """
        if not opened:
            commands = self._envelope(sender, recipient, message)
            if self._pipelining:
                conn.send(commands)
                replies = [conn.getreply() for _ in range(3)]
            else:
                replies = []
                for command in commands.splitlines(keepends=True):
                    conn.send(command)
                    replies.append(conn.getreply())
                    if replies[-1][0] not in (250, 251, 354):
                        break
            _check_envelope(conn, replies, self._abort)
        if not dot_stuffed and (message[:1] == b"." or b"\n." in message):
            message = b"." + message if message[:1] == b"." else message
            message = message.replace(b"\n.", b"\n..")
        if message[-2:] != b"\r\n":
            message += b"\r\n"
        if then is None:
            conn.send(message + b".\r\n")
            code, text = conn.getreply()
            if code != 250:
                self._abort(conn, [], closing=code == 421)
                raise _Refused(Stage.END, code, text)
            return
        conn.send(message + b".\r\n" + self._envelope(*then))
        code, text = conn.getreply()
        if code == 421:  # the server closes: the envelope sent ahead is lost too
            self._abort(conn, [], closing=True)
            raise _Refused(Stage.END, code, text)
        # The next transaction's replies come whatever this message's was: a
        # refused message ends its transaction (RFC 5321 4.1.1.4), no RSET needed.
        try:
            replies = [conn.getreply() for _ in range(3)]
            _check_envelope(conn, replies, self._abort)
        except _Refused as refused:
            self._ahead = _Ahead(*then, refused)
        except (smtplib.SMTPServerDisconnected, OSError):
            # The session ended after this message's reply: that reply stands
            # (an accepted message must not be sent again); the envelope sent
            # ahead is lost with the session, and the next message opens a new one.
            self._drop()
        else:
            self._ahead = _Ahead(*then, None)
        if code != 250:
            raise _Refused(Stage.END, code, text)

    def _abort(
        self, conn: smtplib.SMTP, replies: list[tuple[int, bytes]], *, closing: bool
    ) -> None:
        """Back to a clean state after a refused command (as smtplib does)."""
        if closing:
            conn.close()
            return
        with contextlib.suppress(smtplib.SMTPServerDisconnected):
            if len(replies) == 3 and replies[2][0] == 354:
                # DATA was accepted although an earlier command failed (a
                # pipelining server may do so): end the empty message.
                conn.send(b".\r\n")
                conn.getreply()
            conn.rset()

    def _ready(self, recipient: str) -> smtplib.SMTP:
        conn = self._conn
        if conn is not None and self._count >= self.per_session:
            self._drop(polite=True)
            conn = None
        elif conn is not None and time.monotonic() - self._last_used > _IDLE_CHECK_SECONDS:
            # The server may have closed an idle connection (e.g. during a retry backoff).
            try:
                if conn.noop()[0] != 250:
                    raise smtplib.SMTPServerDisconnected("noop failed")
            except (smtplib.SMTPException, OSError):
                self._drop()
                conn = None
        if conn is None:
            try:
                conn = self._conn = self._connect()
            except NewsletterError as exc:
                raise TemporaryFailure(recipient, None, exc.message, scope=Scope.SESSION) from None
        return conn

    def _drop(self, polite: bool = False) -> None:
        if self._ahead is not None and self._ahead.open:
            polite = False  # in DATA, a QUIT would be message text: hang up
        self._ahead = None
        conn, self._conn = self._conn, None
        if polite:
            _quit(conn)
        elif conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        self._drop(polite=True)


def _no_delay(conn: smtplib.SMTP) -> None:
    """Turn Nagle's algorithm off (TCP_NODELAY) on the connection's socket.

    A message goes out in one write, but TLS cuts it into 16 KB records: with
    Nagle on, the small last record waits for the ACK of the previous ones,
    which the server delays (~40 ms): STARTTLS ran at a tenth of plain SMTP's
    rate (measured into aiosmtpd, 2 connections: 41 msg/s against 425). The
    option survives STARTTLS (the TLS socket wraps the same descriptor).
    """
    sock = getattr(conn, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _check_envelope(
    conn: smtplib.SMTP,
    replies: list[tuple[int, bytes]],
    abort: Callable[..., None],
) -> None:
    """Raise `_Refused` for the first of MAIL, RCPT, DATA's replies that is not
    the one wanted, after `abort` has put the session back in a clean state."""
    wanted = ((Stage.MAIL, (250,)), (Stage.RCPT, (250, 251)), (Stage.DATA, (354,)))
    for (stage, good), (code, text) in zip(wanted, replies, strict=False):
        if code not in good:
            abort(conn, replies, closing=code == 421)
            raise _Refused(stage, code, text)


def _needs_smtputf8(sender: str, recipient: str) -> bool:
    """Whether an envelope needs SMTPUTF8 (RFC 6531): a non-ASCII address."""
    return not (sender.isascii() and recipient.isascii())


def _quit(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        with contextlib.suppress(OSError):
            conn.close()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Refused(Exception):
    """A reply other than the one wanted, at `stage` (`closed`: the server hung up)."""

    def __init__(self, stage: Stage, code: int, text: bytes | str) -> None:
        super().__init__(f"{stage.name}: {code}")
        self.stage = stage
        self.code = code
        self.text = " ".join(_text(text).split())
        self.closed = code == 421


def _failure(recipient: str, refused: _Refused, verdict: Verdict) -> SendFailure:
    """The SendFailure of a refusal: permanent or not, its scope; a permanent
    refusal of the sender stops the run (fatal)."""
    if verdict.permanent:
        return PermanentFailure(
            recipient,
            refused.code,
            refused.text,
            hard_bounce=verdict.bounce,
            scope=verdict.scope,
            fatal=verdict.scope is Scope.SENDER,
        )
    return TemporaryFailure(recipient, refused.code, refused.text, scope=verdict.scope)
