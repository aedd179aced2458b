"""`newsletter serve`: the listening socket and the uvicorn loop around `create_app`."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError
from newsletter.web.app import create_app
from newsletter.web.guard import (
    ConnectionGuard,
    RepeatLimiter,
    descriptor_budget,
    guarded_protocol,
)
from newsletter.web.safety import Limits

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter.web")


def _listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket, or a NewsletterError that says what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise NewsletterError(
            f"cannot listen on {host}: {exc.strerror}",
            hint="use an IP address or host name of this machine in --host or server.host",
        ) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another port with --port (or server.port), or stop what uses it",
        ) from None
    # Listening from here on: connections wait in the backlog until uvicorn
    # accepts them, so the "serving ..." log line below means "ready". (uvicorn
    # listens again with the backlog of `uvicorn_settings`.)
    sock.listen(16)
    sock.set_inheritable(True)
    return sock


def _share_log_handlers() -> bool:
    """Send uvicorn's and the event loop's lines through the CLI's log handler:
    one format, one stream, control characters escaped."""
    handlers = logging.getLogger("newsletter").handlers
    if not handlers:
        return False  # a library caller without logging set up: uvicorn's defaults
    for name in ("uvicorn", "asyncio"):
        other = logging.getLogger(name)
        other.handlers[:] = handlers
        other.setLevel(logging.INFO if name == "uvicorn" else logging.WARNING)
        other.propagate = False
    return True


def uvicorn_settings(limits: Limits | None = None) -> dict[str, Any]:
    """The uvicorn.Config options the service runs with (`serve`'s; tests reuse them).

    The h11 protocol is `guard.guarded_protocol` (a deadline per request, a cap
    on connections below the descriptor limit, with the listen backlog that
    goes with it); uvicorn's own keep-alive timeout (5 s) closes idle
    connections between requests. No `limit_concurrency`: it would answer 503
    to everyone once slow clients hold the connections, which is what the
    guard prevents.
    """
    limits = limits or Limits()
    max_connections, backlog = descriptor_budget(limits.max_connections)
    guard = ConnectionGuard(limits.request_timeout, max_connections)
    return {
        "http": guarded_protocol(guard),
        "backlog": backlog,
        "proxy_headers": True,
        # None: $FORWARDED_ALLOW_IPS, else the local host only (a proxy on this machine).
        "forwarded_allow_ips": None,
        "server_header": False,
        "access_log": False,  # AccessLog logs without query strings (tokens)
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": 5,
    }


def serve(
    config: Config,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run the web service until SIGINT/SIGTERM (one process: the rate limits live in it)."""
    import uvicorn

    app = create_app(config)  # fails fast: secret, database
    host = host or config.server.host
    port = port or config.server.port
    sock = _listen(host, port)
    shared = _share_log_handlers()
    # Errors the event loop or uvicorn may repeat in a tight loop: one line a minute.
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatLimiter) for f in logger.filters):
            logger.addFilter(RepeatLimiter())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="info",
            log_config=None if shared else uvicorn.config.LOGGING_CONFIG,
            **uvicorn_settings(),
        )
    )
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving the subscription service on http://%s:%d/ (public URL %s; site files from %s)",
        shown,
        port,
        config.server.public_url,
        config.paths.public,
    )
    with _stop_is_a_normal_exit():
        server.run(sockets=[sock])
    log.info("stopped")


@contextlib.contextmanager
def _stop_is_a_normal_exit() -> Iterator[None]:
    """Exit status 0 after SIGTERM/SIGINT, like `newsletter run`.

    uvicorn shuts down gracefully on these signals, then re-raises the signal to
    the handler that was there before it; a no-op one lets serve() return.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
