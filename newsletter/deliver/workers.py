"""The delivery workers: one connection each, pushing prebuilt messages to a transport.

A worker knows nothing of the ledger or of campaigns: it receives jobs, sends
each through its transport and reports what happened (`wire`). Per recipient
it only signs the unsubscribe token (and the VERP return address), splices
the prebuilt bytes and sends. Over SMTP it prepares the next job it holds
before sending the current one, so that the next envelope goes out with this
message's data (`SmtpTransport.send`'s `then`): one round trip per message.

With SMTP, each of `email.smtp.connections` connections is a worker PROCESS
(fork, on Linux): a process holds the GIL alone, so the protocol work of one
connection never waits behind another's or behind the ledger writes (measured
on 2 cores, 2 connections into smtp-sink: ~500 msg/s with threads in one
process, ~2,800 with processes). `email.smtp.rate_limit` is divided among the
processes (a token bucket each). Worker processes die with their parent
(PR_SET_PDEATHSIG) and check that it is alive before every message, so none
sends anything the parent can no longer record.

With a `transport_factory` (tests, library users: in-process objects), the file
transport, or where fork is unsafe (not Linux), workers are threads of this
process speaking the same protocol.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import selectors
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from newsletter.bounces.verp import Verp
from newsletter.deliver import wire
from newsletter.deliver.channel import Channel
from newsletter.errors import NewsletterError
from newsletter.headers import check_address
from newsletter.mail import EditionEmail
from newsletter.model import IssueId, issue_tag
from newsletter.smtp_replies import Scope
from newsletter.tokens import UNSUBSCRIBE, sign_token
from newsletter.transports import Transport, make_transport
from newsletter.transports.failures import PermanentFailure, SendFailure, TemporaryFailure
from newsletter.transports.rate import RateLimiter
from newsletter.transports.smtp import SmtpTransport

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

# A worker gives up its connection after this many connection failures in a row
# (server down): the rest stays pending for the retry round or the next run.
MAX_CONNECTION_FAILURES = 3

TransportFactory = Callable[[], Transport]


@dataclass(frozen=True)
class WorkContext:
    """What every worker needs besides its transport (inherited by fork, not pickled).

    `emails`: the prebuilt message of each variant (an edition of the issue, or
    of a reader's topics), by variant index; `secret`: the key of the
    unsubscribe tokens; `sender`: the envelope sender, unless `verp` makes one
    per delivery (email.bounce_address); `date`: the issue (a day or a week).
    """

    emails: dict[int, EditionEmail]
    secret: bytes
    sender: str
    date: IssueId
    verp: Verp | None = None


def make_pool(
    config: Config,
    context: WorkContext,
    jobs: int,
    transport_factory: TransportFactory | None = None,
) -> Pool:
    """The workers for `jobs` messages (not started): processes or threads, see above.

    One worker per `email.smtp.connections` (one for the file transport), never
    more than there are jobs. Without `transport_factory`, the transport is
    email.transport, and `email.smtp.rate_limit` holds for the pool as a whole.
    """
    smtp = config.email.transport == "smtp"
    size = max(1, min(config.email.smtp.connections if smtp else 1, jobs))
    if transport_factory is None and smtp and _fork_is_safe():
        return _ProcessPool(config, context, size)
    if transport_factory is None:
        limiter = RateLimiter(config.email.smtp.rate_limit)

        def transport_factory() -> Transport:
            return make_transport(config, context.date, limiter=limiter)

    return _ThreadPool(transport_factory, context, size)


def _fork_is_safe() -> bool:
    """Worker processes by fork: Linux only (macOS frameworks are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _work(
    conn: Channel,
    make: TransportFactory,
    context: WorkContext,
    first: bool,
    parent: int | None,
) -> None:
    """One connection's loop, in a thread or a process; speaks `wire` on `conn`.

    The first worker's connection is the start-up check: if it cannot open, it
    reports why and stops. `parent`: the pid to outlive (processes only).
    """
    transport = make()
    jobs: deque[wire.Job] = deque()
    try:
        try:
            transport.open()
        except NewsletterError as exc:
            # The first connection is the start-up check; the others retry when sending.
            conn.send((wire.READY, (exc.message, exc.hint) if first else None))
            if first:
                return
        else:
            conn.send((wire.READY, None))
        lost = 0
        secret, sender, verp = context.secret, context.sender, context.verp
        day = issue_tag(context.date)
        # SMTP gets the editions dot-stuffed once, not every message.
        smtp = isinstance(transport, SmtpTransport)
        emails = {k: e.for_smtp() for k, e in context.emails.items()} if smtp else context.emails
        refused: set[int] = set()  # variants whose message the server refused
        eightbit = getattr(transport, "eightbitmime", False)

        def prepare(job: wire.Job) -> tuple[str, str, bytes]:
            """(envelope sender, recipient, message) of a job; ValueError for a bad address."""
            _number, email, name, edition, ident, variant = job
            token = sign_token(secret, UNSUBSCRIBE, email)
            data = emails[variant].personalise(email, name, token, eightbit=eightbit)
            recipient = check_address(email).envelope
            mail_from = verp.address(ident, day, edition) if verp else sender
            return mail_from, recipient, data

        # The next job, prepared while the one before it was sent: SMTP sends
        # its envelope ahead with that message's data (SmtpTransport.send).
        ahead: tuple[wire.Job, tuple[str, str, bytes]] | None = None
        while True:
            if not jobs or conn.poll():
                message = conn.recv()
                if message[0] == wire.JOBS:
                    jobs.extend(message[1])
                    _drop_refused(conn, jobs, refused)
                elif message[0] == wire.STOP:
                    conn.send((wire.DROPPED, [job[0] for job in jobs], wire.STOPPED))
                    jobs.clear()
                elif message[0] == wire.QUIT:
                    return
                continue
            if parent is not None and os.getppid() != parent:
                return  # nobody left to record what we send
            job = jobs.popleft()
            number, email, _name, _edition, _ident, variant = job
            try:
                if ahead is not None and ahead[0] is job:
                    mail_from, recipient, data = ahead[1]
                else:
                    mail_from, recipient, data = prepare(job)
            except ValueError as exc:
                failure = PermanentFailure(email, None, str(exc), False)
                conn.send((wire.DONE, number, wire.failure_to_wire(failure)))
                continue
            ahead = None
            if smtp and jobs:
                with contextlib.suppress(ValueError):  # reported in its turn
                    ahead = (jobs[0], prepare(jobs[0]))
            try:
                if smtp:
                    transport.send(  # type: ignore[call-arg]
                        mail_from,
                        recipient,
                        data,
                        dot_stuffed=True,
                        then=ahead[1] if ahead is not None else None,
                    )
                else:
                    transport.send(mail_from, recipient, data)
            except SendFailure as failure:
                conn.send((wire.DONE, number, wire.failure_to_wire(failure)))
                if failure.fatal:
                    # Nothing more can go out (the run is stopping): say so at once.
                    conn.send((wire.DROPPED, [job[0] for job in jobs], wire.STOPPED))
                    jobs.clear()
                elif failure.permanent and failure.scope is Scope.MESSAGE:
                    # The same bytes would be refused for everyone who gets this variant.
                    refused.add(variant)
                    _drop_refused(conn, jobs, refused)
                if isinstance(failure, TemporaryFailure) and failure.code is None:
                    lost += 1
                    if lost >= MAX_CONNECTION_FAILURES:
                        log.warning("%s: giving up a connection: %s", context.date, failure.text)
                        conn.send((wire.DROPPED, [job[0] for job in jobs], wire.GAVE_UP))
                        jobs.clear()
                        lost = 0
                continue
            lost = 0
            conn.send((wire.DONE, number, None))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the main side is gone
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send((wire.ERROR, traceback.format_exc(), [job[0] for job in jobs]))
    finally:
        with contextlib.suppress(Exception):
            transport.close()
        with contextlib.suppress(OSError):
            conn.close()


def _drop_refused(conn: Channel, jobs: deque[wire.Job], refused: set[int]) -> None:
    """Take the jobs of refused variants out of `jobs` and tell the run (DROPPED)."""
    if not refused:
        return
    dropped = [job[0] for job in jobs if job[5] in refused]
    if dropped:
        kept = [job for job in jobs if job[5] not in refused]
        jobs.clear()
        jobs.extend(kept)
        conn.send((wire.DROPPED, dropped, wire.REFUSED))


def _process_main(
    conn: Channel, config: Config, context: WorkContext, first: bool, rate: float, parent: int
) -> None:
    """A worker process: dies with its parent, ignores the signals the parent handles."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        return
    limiter = RateLimiter(rate)
    _work(
        conn, lambda: make_transport(config, context.date, limiter=limiter), context, first, parent
    )


class Pool:
    """Workers, each reached by one pipe; results are (worker index, message).

    Subclasses say how one worker starts (`_start_worker`) and is waited for (`_join`).
    """

    def __init__(self, context: WorkContext, size: int) -> None:
        self.context = context
        self.size = size
        self.conns: list[Channel] = []
        self.workers: list[Any] = []  # processes or threads
        self.open: set[int] = set()  # workers whose pipe is still open
        self._selector = selectors.DefaultSelector()

    def start(self) -> None:
        """Start every worker and wait until each has connected (or failed to).

        NewsletterError (with the transport's message and hint) if the first
        worker could not connect: nothing has been sent.
        """
        for w in range(self.size):
            here, there = Channel.pair()
            self.workers.append(self._start_worker(w, there))
            self.conns.append(here)
        self.open = set(range(len(self.conns)))
        for w, conn in enumerate(self.conns):
            self._selector.register(conn, selectors.EVENT_READ, w)
        problem = None
        for w, conn in enumerate(self.conns):
            try:
                _, error = conn.recv()
            except (EOFError, OSError):
                self._lost(w)
                error = ("a delivery worker exited at start-up", "see the log")
            if error is not None and w == 0:
                problem = error
        if problem is not None:
            raise NewsletterError(problem[0], hint=problem[1])

    def _start_worker(self, w: int, conn: Channel) -> Any:
        raise NotImplementedError

    def send(self, w: int, message: tuple[Any, ...]) -> None:
        """Send a `wire` message to worker `w` (ignored once its pipe is closed)."""
        if w in self.open:
            with contextlib.suppress(OSError):  # results() will report it lost
                self.conns[w].send(message)

    def results(self, timeout: float, limit: int) -> list[tuple[int, Any]]:
        """What has arrived: waits up to `timeout` seconds for the first, then takes
        the rest (at most `limit`; more wait for the next call).

        One read per worker takes every result it has sent (`Channel`). A
        worker whose pipe closed yields (wire.LOST,) once, after its last results.
        """
        conns = self.conns
        ready = [w for w in sorted(self.open) if conns[w].waiting]
        if not ready:
            events = self._selector.select(timeout if timeout > 0 else 0)
            ready = sorted(key.data for key, _ in events)
            for w in ready:
                conns[w].read(block=False)
        out: list[tuple[int, Any]] = []
        for w in ready:
            conn = conns[w]
            out += [(w, message) for message in conn.take(limit - len(out))]
            if conn.eof and not conn.waiting:
                self._lost(w)
                out.append((w, (wire.LOST,)))
        return out

    def _lost(self, w: int) -> None:
        if w in self.open:
            self.open.discard(w)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(self.conns[w])
        with contextlib.suppress(OSError):
            self.conns[w].close()

    def close(self) -> None:
        """Tell every worker to quit and wait for it."""
        for w in range(len(self.conns)):
            self.send(w, (wire.QUIT,))
        self._join()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()
        self._selector.close()

    def _join(self) -> None:
        raise NotImplementedError


class _ProcessPool(Pool):
    def __init__(self, config: Config, context: WorkContext, size: int) -> None:
        super().__init__(context, size)
        self.config = config

    def _start_worker(self, w: int, conn: Channel) -> Any:
        for stream in (sys.stdout, sys.stderr):  # or the child would print it again
            with contextlib.suppress(Exception):
                stream.flush()
        rate = self.config.email.smtp.rate_limit / self.size
        process = multiprocessing.get_context("fork").Process(
            target=_process_main,
            args=(conn, self.config, self.context, w == 0, rate, os.getpid()),
            name=f"smtp-{w}",
            daemon=True,
        )
        process.start()
        conn.close()  # the child's end
        return process

    def _join(self) -> None:
        deadline = time.monotonic() + self.config.email.smtp.timeout + 5
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


class _ThreadPool(Pool):
    def __init__(self, factory: TransportFactory, context: WorkContext, size: int) -> None:
        super().__init__(context, size)
        self.factory = factory

    def _start_worker(self, w: int, conn: Channel) -> Any:
        thread = threading.Thread(
            target=_work,
            args=(conn, self.factory, self.context, w == 0, None),
            name=f"smtp-{w}",
            daemon=True,
        )
        thread.start()
        return thread

    def _join(self) -> None:
        for thread in self.workers:
            thread.join(timeout=60)
