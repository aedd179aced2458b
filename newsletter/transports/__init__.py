"""Where finished messages go: one small interface, two adapters.

    open() -> None                                     # NewsletterError: cannot start
    send(sender, recipient, message_bytes) -> None     # raises failures.SendFailure
    close() -> None

`files.FileTransport` writes one .eml per recipient (a rerun overwrites, never
duplicates). `smtp.SmtpTransport` is ONE reused SMTP connection (not
thread-safe: the deliverer gives each worker thread its own), paced by a shared
`rate.RateLimiter`. `open()` connects at start-up so a bad host, TLS or
password fails with a NewsletterError before anything is sent. A transport
pushes bytes and knows nothing of issues, editions or subscribers.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

from newsletter.transports.files import FileTransport, outbox_folder
from newsletter.transports.smtp import SmtpTransport

if TYPE_CHECKING:
    import ssl

    from newsletter.config import Config
    from newsletter.transports.rate import RateLimiter


class Transport(Protocol):
    """Also `eightbitmime: bool`: the destination takes 8bit MIME bodies (RFC 6152);
    callers read it with getattr(..., False) and send a 7-bit form otherwise."""

    def open(self) -> None: ...

    def send(self, sender: str, recipient: str, message: bytes) -> None: ...

    def close(self) -> None: ...


def make_transport(
    config: Config,
    date: dt.date,
    *,
    limiter: RateLimiter | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """The configured transport (email.transport): file (default) or smtp."""
    if config.email.transport == "smtp":
        return SmtpTransport(config.email.smtp, ssl_context=ssl_context, limiter=limiter)
    return FileTransport(outbox_folder(config, date))
