"""Slow clients cannot take the service down: a deadline per request, a cap on
connections, and error logs that cannot flood.

uvicorn (0.30-0.54, h11) has no timeout for a request that arrives slowly: its
keep-alive timeout runs only between requests, and `limit_concurrency`
answers 503 only to requests that have arrived whole. 300 connections each
holding half a request therefore kept 300 descriptors forever; at the
process's descriptor limit accept() failed, nobody else was answered, and
asyncio logged "socket.accept() out of system resource" with a traceback on
every retry.

`guarded_protocol` is uvicorn's h11 protocol with two additions:

- a deadline: a connection must deliver each request whole (headers and
  body) within `request_timeout` seconds of connecting or of the previous
  response; otherwise it is closed. The application's own time does not count.
- a cap: at most `max_connections` connections (kept below the descriptor
  limit, `descriptor_budget`); one more evicts the connection that has waited
  longest for its request, so a newcomer with a whole request always gets in.

`RepeatLimiter` lets one line through per kind of message and window and
counts the rest into the next line.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("newsletter.web")

# Descriptors kept for everything but client connections: the listening
# socket, the database and its WAL, log files, the event loop, threads.
RESERVED_DESCRIPTORS = 32
LARGEST_BACKLOG = 2048


def descriptor_budget(wanted: int, soft_limit: int | None = None) -> tuple[int, int]:
    """(connections at most, listen backlog) that stay under the descriptor limit.

    asyncio accepts up to `backlog` connections in one go before any of them
    reaches the guard, so the cap leaves room for two such bursts besides
    `RESERVED_DESCRIPTORS`: accept() then never fails for want of descriptors.
    `soft_limit`: RLIMIT_NOFILE's soft limit (the process's if None).
    """
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit <= 0:
        return wanted, LARGEST_BACKLOG
    backlog = max(16, min(LARGEST_BACKLOG, soft_limit // 8))
    return max(1, min(wanted, soft_limit - RESERVED_DESCRIPTORS - 2 * backlog)), backlog


class ConnectionGuard:
    """The state one server's connections share: who waits for a request, and counts.

    `closed_slow` counts connections closed at their deadline, `evicted`
    those closed to make room at the cap. A summary line is logged at most
    once per `report_every` seconds.
    """

    def __init__(
        self,
        request_timeout: float,
        max_connections: int,
        *,
        report_every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.report_every = report_every
        self.clock = clock
        self.open: set[Any] = set()
        self.waiting: dict[Any, None] = {}  # insertion order: longest waiting first
        self.closed_slow = 0
        self.evicted = 0
        self._reported = (0, 0)
        self._last_report = -float("inf")

    def opened(self, connection: Any) -> None:
        """A new connection; at the cap, close the one that has waited longest."""
        self.open.add(connection)
        if len(self.open) <= self.max_connections:
            return
        victim = next((c for c in self.waiting if c is not connection), connection)
        self.evicted += 1
        self.forget(victim)
        victim.transport.close()
        self.report()

    def forget(self, connection: Any) -> None:
        self.waiting.pop(connection, None)
        self.open.discard(connection)

    def report(self) -> None:
        """Log the counts of closed connections, at most once per `report_every`."""
        counts = (self.closed_slow, self.evicted)
        now = self.clock()
        if counts == self._reported or now - self._last_report < self.report_every:
            return
        slow, evicted = counts[0] - self._reported[0], counts[1] - self._reported[1]
        self._reported, self._last_report = counts, now
        log.warning(
            "slow or idle clients: closed %d connection(s) that sent no whole request within "
            "%g s and %d at the cap of %d connections",
            slow,
            self.request_timeout,
            evicted,
            self.max_connections,
        )


def guarded_protocol(guard: ConnectionGuard) -> type[H11Protocol]:
    """uvicorn's h11 protocol under `guard` (pass it as uvicorn.Config(http=...))."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            guard.opened(self)
            if not transport.is_closing():
                self._await_request()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._check()

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                self._await_request()
            super().on_response_complete()
            self._check()  # a pipelined request may be complete already

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            guard.forget(self)
            super().connection_lost(exc)

        def _await_request(self) -> None:
            self._cancel()
            self._deadline = self.loop.call_later(guard.request_timeout, self._too_slow)
            guard.waiting[self] = None

        def _check(self) -> None:
            """Stop the clock once the request has arrived whole."""
            if self._deadline is not None and self.conn.their_state not in (
                h11.IDLE,
                h11.SEND_BODY,
            ):
                self._cancel()
                guard.waiting.pop(self, None)

        def _cancel(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            guard.waiting.pop(self, None)
            if not self.transport.is_closing():
                guard.closed_slow += 1
                self.transport.close()
                guard.report()

    return GuardedH11Protocol


class RepeatLimiter(logging.Filter):
    """One record per (logger, message template) per `window` seconds.

    The records held back are counted; the next one let through says how
    many ("... [and 312 more like it in 60 s]") and drops their tracebacks'
    repetition. For the loggers of the event loop and the server, whose errors
    (accept() out of resources) can repeat in a tight loop.
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        last, held = self._seen.get(key, (-float("inf"), 0))
        if now - last < self.window:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} [and {held} more like it in {self.window:g} s]"
        if len(self._seen) > 1000:  # bounded: forget the oldest kinds
            for old in list(self._seen)[:500]:
                del self._seen[old]
        return True
