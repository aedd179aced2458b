"""Send one issue to every active subscriber, exactly once.

Order of work: count the plan (who still needs this date), render every edition
once, start the workers, each opening its connection (a bad server fails here,
before anything is marked), then page through the plan (keyset pages of
`PAGE` subscribers: memory stays flat however long the list): write the page's
'pending' ledger rows, hand its messages to the workers.

Workers. With SMTP, each of `email.smtp.connections` connections is a worker
PROCESS (fork, on Linux): a process holds the GIL alone, so the
protocol work of one connection never waits behind another's or behind the
ledger writes (measured on 2 cores, 2 connections into smtp-sink: ~500 msg/s
with threads in one process, ~2,800 with processes). Jobs go out in small chunks over a pipe, results come back one by one.
A worker does per recipient only: sign the token, splice the prebuilt bytes,
send. `email.smtp.rate_limit` is divided among the processes (a token bucket
each). With a `transport_factory` (tests, library users: in-process objects),
the file transport, or where fork is unsafe (not Linux), workers are threads of
this process speaking the same protocol.

Exactly-once: a message is marked 'sent' only after the server accepted it.
This process is the only database writer and does "group commits": it waits
for the next results, then writes everything that arrived meanwhile in one
transaction. At low rates that is one commit per message; at high rates batches
grow by themselves. A kill -9 therefore repeats at most the messages accepted
but not yet committed (about one per connection at low rates, at most one batch
at high rates) on the next run. Worker processes die with this process
(PR_SET_PDEATHSIG) and check that it is alive before every message, so none
sends anything this process can no longer record.

Retries: 4xx and lost connections are retried in rounds with a backoff
(`retry_delays`), a bounded number of times; what still fails stays 'pending'
and a rerun tries again. 5xx is 'failed' for good; a refused recipient counts
a hard bounce and `email.bounce_limit` bounces mark the subscriber bounced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError
from newsletter.mail import (
    UNSUBSCRIBE,
    EditionEmail,
    build_edition_email,
    check_address,
    check_sendable,
    resolve_secret,
    sign_token,
)
from newsletter.model import Digest, Edition, Subscriber
from newsletter.plurals import nouns
from newsletter.store import DeliveryState, Outcome, Store, normalize_email
from newsletter.transports import (
    FileTransport,
    PermanentFailure,
    RateLimiter,
    SendFailure,
    SmtpTransport,
    TemporaryFailure,
    Transport,
    make_transport,
    outbox_folder,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from newsletter.config import Config

log = logging.getLogger("newsletter")

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0)
# A worker gives up its connection after this many connection failures in a row
# (server down): the rest stays pending for the retry round or the next run.
MAX_CONNECTION_FAILURES = 3
_MAX_BATCH = 2000
# Subscribers read (and marked pending) per page of the plan.
PAGE = 2000
# Jobs handed to a worker at a time; it gets more when it has fewer than this.
_CHUNK = 32
# At most this share of the main process's time goes to ledger writes.
_WRITE_SHARE = 0.25

ProgressCallback = Callable[[int, int], None]
TransportFactory = Callable[[], Transport]


@dataclass(frozen=True)
class EditionCounts:
    sent: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True)
class DeliveryReport:
    """What one run did. `recipients` is filled only for dry runs."""

    date: dt.date
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    pending_left: int = 0
    seconds: float = 0.0
    per_edition: Mapping[str, EditionCounts] = field(default_factory=dict)
    messages_per_second: float = 0.0
    dry_run: bool = False
    too_late: bool = False
    recipients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""


# A job on the wire: (number, email, name, edition value).
_Job = tuple[int, str, str, str]


def deliver_issue(
    config: Config,
    store: Store,
    digest: Digest,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    now: dt.datetime | None = None,
    transport_factory: TransportFactory | None = None,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Email the issue to every active subscriber not yet sent this date.

    Setting `stop` (SIGTERM in the daemon) lets the messages in flight finish,
    records them, and returns with the rest still pending for the next run.

    `progress(done, total)` is called from this thread after each ledger write
    (done = sent + failed). `transport_factory` overrides email.transport (tests,
    library users; its transports run in threads of this process);
    `retry_delays` are the waits before each retry round.
    """
    now = now or dt.datetime.now(config.site.tz)
    date = digest.date
    late = (now.astimezone(config.site.tz).date() - date).days
    if late > config.email.max_lateness_days and not force:
        note = (
            f"{date} is {late} days old (email.max_lateness_days = "
            f"{config.email.max_lateness_days}): not emailed; use force to send anyway"
        )
        log.warning(note)
        return DeliveryReport(date=date, too_late=True, note=note)

    if dry_run:
        todo, skipped = store.delivery_plan(date, config.editions)
        groups: dict[Edition, list[Subscriber]] = {}
        for subscriber in todo:
            groups.setdefault(subscriber.edition, []).append(subscriber)
        recipients = {e.value: tuple(s.email for s in subs) for e, subs in groups.items()}
        per = {e: EditionCounts(pending=len(r)) for e, r in recipients.items()}
        note = (
            f"dry run: {nouns(len(todo), 'message', 'messages')} would be sent for {date}"
            + "".join(f", {len(r)} {e}" for e, r in recipients.items())
        )
        log.info(note)
        return DeliveryReport(
            date=date,
            skipped=skipped,
            pending_left=len(todo),
            per_edition=per,
            dry_run=True,
            recipients=recipients,
            note=note,
        )

    # One sender per database at a time: two would both see everyone as not
    # done yet and both send. Planning happens under the lock.
    with store.sending_lock(date):
        return _send(config, store, digest, now, progress, transport_factory, retry_delays, stop)


def _send(
    config: Config,
    store: Store,
    digest: Digest,
    now: dt.datetime,
    progress: ProgressCallback | None,
    transport_factory: TransportFactory | None,
    retry_delays: Sequence[float],
    stop: threading.Event | None,
) -> DeliveryReport:
    started = time.monotonic()
    date = digest.date
    planned, skipped = store.plan_counts(date, config.editions)
    # In the order of config.editions, as the per-edition report always was.
    planned = {e: planned[e] for e in config.editions if planned.get(e)}
    total = sum(planned.values())
    if not total:
        note = f"{date}: nothing to send ({skipped} already done)"
        log.info(note)
        return DeliveryReport(date=date, skipped=skipped, note=note)

    check_sendable(config)
    secret = resolve_secret(config, smtp=config.email.transport == "smtp")
    emails = {edition: build_edition_email(config, digest, edition, now=now) for edition in planned}
    sender = check_address(config.email.sender_address).envelope
    smtp = config.email.transport == "smtp"
    connections = max(1, min(config.email.smtp.connections if smtp else 1, total))
    use_processes = transport_factory is None and smtp and _fork_is_safe()
    if transport_factory is None:
        limiter = RateLimiter(config.email.smtp.rate_limit)

        def transport_factory() -> Transport:
            return make_transport(config, date, limiter=limiter)

    context = _WorkContext(
        emails={e.value: m for e, m in emails.items()},
        secret=secret,
        sender=sender,
        date=date,
    )
    stop = stop or threading.Event()
    pool = (
        _ProcessPool(config, context, connections)
        if use_processes
        else _ThreadPool(transport_factory, context, connections)
    )
    run = _Run(config, store, date, pool, progress, total, stop)
    send_started = time.monotonic()
    try:
        # Start-up check: a bad host/TLS/password raises before anything is marked.
        pool.start()
        send_started = time.monotonic()
        source = run.plan(config.editions)
        jobs: Iterator[_Job] = source
        for attempt in range(len(retry_delays) + 1):
            retry = run.round(jobs)
            jobs = itertools.chain(retry, source) if run.source_left else iter(retry)
            if not retry and not run.source_left:
                break
            if attempt == len(retry_delays) or stop.is_set():
                break
            log.info(
                "%s: %s; retrying in %.1f s",
                date,
                nouns(len(retry), "temporary failure", "temporary failures"),
                retry_delays[attempt],
            )
            if stop.wait(retry_delays[attempt]):
                break
    finally:
        pool.close()
    send_seconds = max(time.monotonic() - send_started, 1e-9)
    pending = total - run.counts["sent"] - run.counts["failed"]
    per = {
        e.value: EditionCounts(
            sent=run.per_edition[(e.value, "sent")],
            failed=run.per_edition[(e.value, "failed")],
            pending=n - run.per_edition[(e.value, "sent")] - run.per_edition[(e.value, "failed")],
        )
        for e, n in planned.items()
    }
    report = DeliveryReport(
        date=date,
        sent=run.counts["sent"],
        failed=run.counts["failed"],
        skipped=skipped,
        pending_left=pending,
        seconds=time.monotonic() - started,
        per_edition=per,
        messages_per_second=run.counts["sent"] / send_seconds,
    )
    log.info(
        "%s: sent %d, failed %d, skipped %d, pending %d in %.1f s (%.0f msg/s)",
        date,
        report.sent,
        report.failed,
        report.skipped,
        report.pending_left,
        report.seconds,
        report.messages_per_second,
    )
    return report


def _fork_is_safe() -> bool:
    """Worker processes by fork: Linux only (macOS frameworks are not fork-safe)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


# --- the main side: plan, dispatch, ledger ---------------------------------------


class _Run:
    """The sending part of one delivery: hands jobs to the workers, writes the ledger."""

    def __init__(
        self,
        config: Config,
        store: Store,
        date: dt.date,
        pool: _Pool,
        progress: ProgressCallback | None,
        total: int,
        shutdown: threading.Event,
    ) -> None:
        self.config = config
        self.store = store
        self.date = date
        self.pool = pool
        self.progress = progress
        self.total = total
        self.shutdown = shutdown
        self.counts: Counter[str] = Counter()
        self.per_edition: Counter[tuple[str, str]] = Counter()
        self.source_left = True
        self._number = 0
        self._next_write = 0.0
        # (edition, address) of temporary failures that reached email.max_attempts.
        self._abandoned: set[tuple[str, str]] = set()

    def plan(self, editions: Sequence[Edition]) -> Iterator[_Job]:
        """Jobs page by page; a page's 'pending' rows are written before its jobs go out."""
        for page in self.store.plan_pages(self.date, editions, page=PAGE):
            self.store.start_deliveries(self.date, page)
            for sub in page:
                self._number += 1
                yield (self._number, sub.email, sub.name, sub.edition.value)

    def round(self, jobs: Iterator[_Job]) -> list[_Job]:
        """Send jobs once each; return those that failed temporarily.

        `source_left` is True afterwards if `jobs` was not used up: every
        connection gave up (the next round takes the rest) or a stop was requested.
        """
        pool = self.pool
        if not pool.open:
            raise NewsletterError(
                "every delivery worker has stopped", hint="see the log; a rerun sends the rest"
            )
        retry: list[_Job] = []
        # Per worker: the jobs it holds (queued or in flight), by number.
        assigned: list[dict[int, _Job]] = [{} for _ in range(pool.size)]
        given_up = [w not in pool.open for w in range(pool.size)]
        stopping = False
        exhausted = False
        error: BaseException | None = None
        outcomes: list[Outcome] = []  # accepted (or failed), not yet in the ledger
        try:
            while True:
                if not stopping and (self.shutdown.is_set() or error is not None):
                    stopping = True
                    for w in range(pool.size):
                        pool.send(w, ("stop",))
                if not stopping and not exhausted:
                    exhausted = self._dispatch(jobs, assigned, given_up)
                busy = any(assigned)
                if not busy and (stopping or exhausted or all(given_up)):
                    break
                wait = self._next_write - time.monotonic() if outcomes else 0.2
                for w, message in pool.results(timeout=max(0.0, wait), limit=_MAX_BATCH):
                    kind = message[0]
                    if kind == "done":
                        job = assigned[w].pop(message[1])
                        failure = _failure_from(message[2])
                        outcomes.append(self._classify(job, failure, retry))
                        if failure is not None and failure.fatal:
                            error = error or failure
                    elif kind == "dropped":
                        # Jobs a worker will not send (it gave up its connection,
                        # or was asked to stop): sent again later, nothing recorded.
                        retry.extend(assigned[w].pop(number) for number in message[1])
                        given_up[w] = given_up[w] or message[2] == "gave up"
                    elif kind == "error":
                        error = error or RuntimeError(f"a delivery worker failed:\n{message[1]}")
                        given_up[w] = True
                    elif kind == "lost":
                        # The worker died: what it held stays pending (one of them
                        # may have been accepted, as after a crash).
                        given_up[w] = True
                        retry.extend(assigned[w].values())
                        assigned[w].clear()
                if time.monotonic() >= self._next_write or len(outcomes) >= _MAX_BATCH:
                    self._write(outcomes)
                    outcomes = []
            self._write(outcomes)
        except BaseException:
            # Ctrl-C or a database error: stop the workers, keep what was accepted.
            self._salvage(assigned, retry, outcomes)
            raise
        self.source_left = not exhausted
        if isinstance(error, SendFailure):
            sender = check_address(self.config.email.sender_address).envelope
            raise NewsletterError(
                f"the SMTP server refused the sender {sender}: {error.reply}",
                hint="check email.from and that the server lets this account send as it; "
                f"{self.counts['sent']} messages were sent, a rerun sends the rest",
            )
        if error is not None:
            raise error
        return [job for job in retry if (job[3], job[1].lower()) not in self._abandoned]

    def _dispatch(
        self, jobs: Iterator[_Job], assigned: list[dict[int, _Job]], given_up: list[bool]
    ) -> bool:
        """Top up every working connection to two chunks; True when `jobs` ran out."""
        for w, held in enumerate(assigned):
            if given_up[w] or len(held) >= _CHUNK:
                continue
            want = 2 * _CHUNK - len(held)
            chunk = list(itertools.islice(jobs, want))
            if chunk:
                held.update((job[0], job) for job in chunk)
                self.pool.send(w, ("jobs", chunk))
            if len(chunk) < want:
                return True
        return False

    def _salvage(
        self, assigned: list[dict[int, _Job]], retry: list[_Job], outcomes: list[Outcome]
    ) -> None:
        """After an exception here: stop the workers and record what they still report."""
        for w in range(self.pool.size):
            self.pool.send(w, ("stop",))
        deadline = time.monotonic() + self.config.email.smtp.timeout + 5
        with contextlib.suppress(Exception):
            while any(assigned) and self.pool.open and time.monotonic() < deadline:
                for w, message in self.pool.results(timeout=0.2, limit=_MAX_BATCH):
                    if message[0] == "done" and message[1] in assigned[w]:
                        job = assigned[w].pop(message[1])
                        outcomes.append(self._classify(job, _failure_from(message[2]), retry))
                    elif message[0] == "dropped":
                        for number in message[1]:
                            assigned[w].pop(number, None)
                    elif message[0] == "lost":
                        assigned[w].clear()
        try:
            self._write(outcomes)
        except Exception:  # the original error is what the caller must see
            log.exception("%s: %d outcomes could not be recorded", self.date, len(outcomes))

    def _classify(self, job: _Job, failure: SendFailure | None, retry: list[_Job]) -> Outcome:
        _, email, _, edition_value = job
        edition = Edition(edition_value)
        if failure is None:
            self.counts["sent"] += 1
            self.per_edition[(edition_value, "sent")] += 1
            return Outcome(edition, email, DeliveryState.SENT, "accepted")
        if isinstance(failure, PermanentFailure) and not failure.fatal:
            self.counts["failed"] += 1
            self.per_edition[(edition_value, "failed")] += 1
            log.warning("%s %s: %s (not retried)", self.date, email, failure.reply)
            return Outcome(edition, email, DeliveryState.FAILED, failure.reply, failure.hard_bounce)
        if not failure.fatal:
            retry.append(job)
        return Outcome(edition, email, DeliveryState.PENDING, failure.reply)

    def _write(self, outcomes: list[Outcome]) -> None:
        """One group commit. The next waits until this process has spent at most
        `_WRITE_SHARE` of its time writing: at high rates batches grow (the CPU
        goes to the workers); at low rates every message is written at once."""
        if not outcomes:
            return
        started = time.monotonic()
        email = self.config.email
        for o in self.store.record(self.date, outcomes, email.bounce_limit, email.max_attempts):
            self.counts["failed"] += 1
            self.per_edition[(o.edition.value, "failed")] += 1
            self._abandoned.add((o.edition.value, o.email.lower()))
            log.warning("%s %s: %s", self.date, o.email, o.reply)
        if self.progress is not None:
            self.progress(self.counts["sent"] + self.counts["failed"], self.total)
        ended = time.monotonic()
        self._next_write = ended + (ended - started) * (1 / _WRITE_SHARE - 1)


def _failure_from(wire: tuple[Any, ...] | None) -> SendFailure | None:
    if wire is None:
        return None
    permanent, recipient, code, text, hard_bounce, fatal = wire
    failure: SendFailure = (
        PermanentFailure(recipient, code, text, hard_bounce)
        if permanent
        else TemporaryFailure(recipient, code, text)
    )
    failure.fatal = fatal
    return failure


def _failure_wire(failure: SendFailure) -> tuple[Any, ...]:
    return (
        isinstance(failure, PermanentFailure),
        failure.recipient,
        failure.code,
        failure.text,
        getattr(failure, "hard_bounce", False),
        failure.fatal,
    )


# --- the workers ------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkContext:
    """What every worker needs besides its transport (inherited by fork, not pickled)."""

    emails: dict[str, EditionEmail]
    secret: bytes
    sender: str
    date: dt.date


def _work(
    conn: Connection,
    make: TransportFactory,
    context: _WorkContext,
    first: bool,
    parent: int | None,
) -> None:
    """One connection's loop, in a thread or a process.

    Protocol: receives ("jobs", [job...]), ("stop",), ("quit",); sends ("ready",
    error or None) once, then ("done", number, failure or None) per message,
    ("dropped", [number...], why) for jobs it will not send and ("error", text,
    [number...]) if it breaks. `parent`: the pid to outlive (processes only).
    """
    transport = make()
    jobs: deque[_Job] = deque()
    try:
        try:
            transport.open()
        except NewsletterError as exc:
            # The first connection is the start-up check; the others retry when sending.
            conn.send(("ready", (exc.message, exc.hint) if first else None))
            if first:
                return
        else:
            conn.send(("ready", None))
        lost = 0
        secret, sender = context.secret, context.sender
        # SMTP gets the editions dot-stuffed once, not every message.
        smtp = isinstance(transport, SmtpTransport)
        emails = {k: e.for_smtp() for k, e in context.emails.items()} if smtp else context.emails
        while True:
            if not jobs or conn.poll():
                message = conn.recv()
                if message[0] == "jobs":
                    jobs.extend(message[1])
                elif message[0] == "stop":
                    conn.send(("dropped", [job[0] for job in jobs], "stop"))
                    jobs.clear()
                elif message[0] == "quit":
                    return
                continue
            if parent is not None and os.getppid() != parent:
                return  # nobody left to record what we send
            job = jobs.popleft()
            number, email, name, edition = job
            try:
                token = sign_token(secret, UNSUBSCRIBE, email)
                data = emails[edition].personalise(email, name, token)
                recipient = check_address(email).envelope
            except ValueError as exc:
                failure = PermanentFailure(email, None, str(exc), False)
                conn.send(("done", number, _failure_wire(failure)))
                continue
            try:
                if smtp:
                    transport.send(sender, recipient, data, dot_stuffed=True)  # type: ignore[call-arg]
                else:
                    transport.send(sender, recipient, data)
            except SendFailure as failure:
                conn.send(("done", number, _failure_wire(failure)))
                if isinstance(failure, TemporaryFailure) and failure.code is None:
                    lost += 1
                    if lost >= MAX_CONNECTION_FAILURES:
                        log.warning("%s: giving up a connection: %s", context.date, failure.text)
                        conn.send(("dropped", [job[0] for job in jobs], "gave up"))
                        jobs.clear()
                        lost = 0
                continue
            lost = 0
            conn.send(("done", number, None))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the main side is gone
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc(), [job[0] for job in jobs]))
    finally:
        with contextlib.suppress(Exception):
            transport.close()
        with contextlib.suppress(OSError):
            conn.close()


def _process_main(
    conn: Connection, config: Config, context: _WorkContext, first: bool, rate: float, parent: int
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


class _Pool:
    """Workers, each reached by one pipe; results are (worker index, message).

    Subclasses say how one worker starts (`_start_worker`) and is waited for (`_join`).
    """

    def __init__(self, context: _WorkContext, size: int) -> None:
        self.context = context
        self.size = size
        self.conns: list[Connection] = []
        self.workers: list[Any] = []  # processes or threads
        self.open: set[int] = set()  # workers whose pipe is still open

    def start(self) -> None:
        """Start every worker and wait until each has connected (or failed to)."""
        for w in range(self.size):
            here, there = multiprocessing.Pipe()
            self.workers.append(self._start_worker(w, there))
            self.conns.append(here)
        self.open = set(range(len(self.conns)))
        self._index = {id(conn): w for w, conn in enumerate(self.conns)}
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

    def _start_worker(self, w: int, conn: Connection) -> Any:
        raise NotImplementedError

    def send(self, w: int, message: tuple[Any, ...]) -> None:
        if w in self.open:
            with contextlib.suppress(OSError, EOFError):  # results() will report it lost
                self.conns[w].send(message)

    def results(self, timeout: float, limit: int) -> list[tuple[int, Any]]:
        """What has arrived: waits up to `timeout` for the first, then takes the rest.

        A worker whose pipe closed yields ("lost",) once.
        """
        ready = multiprocessing.connection.wait([self.conns[w] for w in self.open], timeout)
        out: list[tuple[int, Any]] = []
        for conn in ready:
            w = self._index[id(conn)]
            try:
                while len(out) < limit:
                    out.append((w, conn.recv()))  # type: ignore[union-attr]
                    if not conn.poll():  # type: ignore[union-attr]
                        break
            except (EOFError, OSError):
                self._lost(w)
                out.append((w, ("lost",)))
        return out

    def _lost(self, w: int) -> None:
        self.open.discard(w)
        with contextlib.suppress(OSError):
            self.conns[w].close()

    def close(self) -> None:
        for w in range(len(self.conns)):
            self.send(w, ("quit",))
        self._join()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.close()

    def _join(self) -> None:
        raise NotImplementedError


class _ProcessPool(_Pool):
    def __init__(self, config: Config, context: _WorkContext, size: int) -> None:
        super().__init__(context, size)
        self.config = config

    def _start_worker(self, w: int, conn: Connection) -> Any:
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


class _ThreadPool(_Pool):
    def __init__(self, factory: TransportFactory, context: _WorkContext, size: int) -> None:
        super().__init__(context, size)
        self.factory = factory

    def _start_worker(self, w: int, conn: Connection) -> Any:
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


def send_test(
    config: Config,
    digest: Digest,
    to: str,
    edition: Edition | str,
    *,
    now: dt.datetime | None = None,
    transport: Transport | None = None,
) -> None:
    """One copy to `to` with [TEST] in the subject; not recorded in the ledger.

    With the file transport it lands in outbox/YYYY-MM-DD/test/.
    """
    edition = Edition(edition)
    address = normalize_email(to)
    smtp = config.email.transport == "smtp"
    secret = resolve_secret(config, smtp=smtp)
    message = build_edition_email(config, digest, edition, now=now, test=True)
    data = message.personalise(address, "", sign_token(secret, UNSUBSCRIBE, address))
    if transport is None:
        transport = (
            make_transport(config, digest.date)
            if smtp
            else FileTransport(outbox_folder(config, digest.date) / "test")
        )
    transport.open()
    try:
        transport.send(
            check_address(config.email.sender_address).envelope,
            check_address(address).envelope,
            data,
        )
    except SendFailure as failure:
        raise NewsletterError(
            f"the test message to {address} was not accepted: {failure.reply}",
            hint="check the address and email.smtp settings",
        ) from None
    finally:
        transport.close()
    log.info("test message (%s edition) sent to %s", edition.value, address)
