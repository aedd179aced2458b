"""A discarding SMTP sink (aiosmtpd) for bench/send.py: plain, or STARTTLS.

    python bench/smtp_sink.py PORT [--tls CERT.pem KEY.pem]

Accepts every message with 250 and keeps nothing; with --tls it offers
STARTTLS and requires it (as a submission relay does). Prints "ready" once
listening; runs until SIGTERM or its standard input closes. Its own process:
the sink's CPU is not the benchmark's.
"""

from __future__ import annotations

import argparse
import signal
import socket
import ssl
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class NoDelaySMTP(SMTP):
    """aiosmtpd's SMTP with Nagle's algorithm off: a relay answers pipelined
    commands at once (Postfix does), instead of holding the 2nd and 3rd reply."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class NoDelayController(Controller):
    def factory(self) -> SMTP:
        return NoDelaySMTP(self.handler, **self.SMTP_kwargs)


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 discarded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    options: dict[str, Any] = {"data_size_limit": 0}
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
        options |= {"tls_context": context, "require_starttls": True}
    controller = NoDelayController(Discard(), hostname="127.0.0.1", port=args.port, **options)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
