"""Send one issue to every active subscriber, exactly once.

Order of work: plan (who still needs this date), render every edition once,
open one connection (a bad server fails here, before anything is marked), write
'pending' ledger rows, then send with `email.smtp.connections` worker threads.

Exactly-once: a message is marked 'sent' only after the server accepted it.
The main thread is the only database writer and does "group commits": it
blocks for the next result, then writes everything that arrived meanwhile in
one transaction. At low rates that is one commit per message; at high rates
batches grow by themselves. A kill -9 therefore repeats at most the messages
accepted but not yet committed (about one per connection) on the next run.

Retries: 4xx and lost connections are retried in rounds with a backoff
(`retry_delays`), a bounded number of times; what still fails stays 'pending'
and a rerun tries again. 5xx is 'failed' for good; a refused recipient counts
a hard bounce and `email.bounce_limit` bounces mark the subscriber bounced.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
from newsletter.store import DeliveryState, Outcome, Store, normalize_email
from newsletter.transports import (
    FileTransport,
    PermanentFailure,
    RateLimiter,
    SendFailure,
    TemporaryFailure,
    Transport,
    make_transport,
    outbox_folder,
)

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0)
# A worker gives up its connection after this many connection failures in a row
# (server down): the rest stays pending for the retry round or the next run.
MAX_CONNECTION_FAILURES = 3
_MAX_BATCH = 2000

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


@dataclass(frozen=True)
class _Job:
    subscriber: Subscriber
    email: EditionEmail


_DONE = object()


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
    library users); `retry_delays` are the waits before each retry round.
    """
    started = time.monotonic()
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

    todo, skipped = store.delivery_plan(date, config.editions)
    groups: dict[Edition, list[Subscriber]] = {}
    for subscriber in todo:
        groups.setdefault(subscriber.edition, []).append(subscriber)
    if dry_run:
        recipients = {e.value: tuple(s.email for s in subs) for e, subs in groups.items()}
        per = {e: EditionCounts(pending=len(r)) for e, r in recipients.items()}
        note = f"dry run: {len(todo)} messages would be sent for {date}" + "".join(
            f", {len(r)} {e}" for e, r in recipients.items()
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
    if not todo:
        note = f"{date}: nothing to send ({skipped} already done)"
        log.info(note)
        return DeliveryReport(date=date, skipped=skipped, note=note)

    check_sendable(config)
    secret = resolve_secret(config, smtp=config.email.transport == "smtp")
    emails = {edition: build_edition_email(config, digest, edition, now=now) for edition in groups}
    if transport_factory is None:
        limiter = RateLimiter(config.email.smtp.rate_limit)

        def transport_factory() -> Transport:
            return make_transport(config, date, limiter=limiter)

    connections = config.email.smtp.connections if config.email.transport == "smtp" else 1
    connections = max(1, min(connections, len(todo)))
    transports = [transport_factory()]
    try:
        # Start-up check: a bad host/TLS/password raises before anything is marked.
        transports[0].open()
        transports += [transport_factory() for _ in range(connections - 1)]
        store.start_deliveries(date, todo)
        stop = stop or threading.Event()
        run = _Run(config, store, date, transports, secret, progress, len(todo), stop)
        send_started = time.monotonic()
        jobs = [_Job(s, emails[s.edition]) for s in todo]
        for attempt in range(len(retry_delays) + 1):
            jobs = run.round(jobs)
            if not jobs or attempt == len(retry_delays) or stop.is_set():
                break
            log.info(
                "%s: %d temporary failures; retrying in %.1f s",
                date,
                len(jobs),
                retry_delays[attempt],
            )
            if stop.wait(retry_delays[attempt]):
                break
    finally:
        for transport in transports:
            try:
                transport.close()
            except Exception:  # closing must never hide the real outcome
                log.debug("closing a transport failed", exc_info=True)
    send_seconds = max(time.monotonic() - send_started, 1e-9)
    pending = len(todo) - run.counts["sent"] - run.counts["failed"]
    per = {
        e.value: EditionCounts(
            sent=run.per_edition[(e, "sent")],
            failed=run.per_edition[(e, "failed")],
            pending=len(subs) - run.per_edition[(e, "sent")] - run.per_edition[(e, "failed")],
        )
        for e, subs in groups.items()
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


class _Run:
    """The sending part of one delivery: worker threads and the ledger writer."""

    def __init__(
        self,
        config: Config,
        store: Store,
        date: dt.date,
        transports: list[Transport],
        secret: bytes,
        progress: ProgressCallback | None,
        total: int,
        shutdown: threading.Event,
    ) -> None:
        self.config = config
        self.store = store
        self.date = date
        self.transports = transports
        self.secret = secret
        self.progress = progress
        self.total = total
        self.shutdown = shutdown
        self.sender = check_address(config.email.sender_address).envelope
        self.counts: Counter[str] = Counter()
        self.per_edition: Counter[tuple[Edition, str]] = Counter()

    def round(self, jobs: list[_Job]) -> list[_Job]:
        """Send jobs once each; return those that failed temporarily."""
        work: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        for job in jobs:
            work.put(job)
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=self._worker, args=(t, work, results, stop), name=f"smtp-{i}", daemon=True
            )
            for i, t in enumerate(self.transports[: len(jobs)])
        ]
        for thread in threads:
            thread.start()
        retry: list[_Job] = []
        error: BaseException | None = None
        finished = 0
        try:
            while finished < len(threads):
                items = [results.get()]
                while len(items) < _MAX_BATCH:
                    try:
                        items.append(results.get_nowait())
                    except queue.Empty:
                        break
                outcomes: list[Outcome] = []
                for item in items:
                    if item is _DONE:
                        finished += 1
                    elif item[0] is None:
                        error = error or item[1]
                        stop.set()
                    else:
                        outcome = self._classify(item[0], item[1], retry)
                        if isinstance(item[1], SendFailure) and item[1].fatal:
                            error = error or item[1]
                            stop.set()
                        outcomes.append(outcome)
                self._write(outcomes)
        except BaseException:
            # Ctrl-C or a database error: stop the workers, keep what was accepted.
            stop.set()
            for thread in threads:
                thread.join(timeout=self.config.email.smtp.timeout + 5)
            leftovers: list[Outcome] = []
            while True:
                try:
                    item = results.get_nowait()
                except queue.Empty:
                    break
                if item is not _DONE and item[0] is not None:
                    leftovers.append(self._classify(item[0], item[1], retry))
            self._write(leftovers)
            raise
        for thread in threads:
            thread.join()
        # Jobs no worker took (all connections gave up): retry them too.
        while True:
            try:
                retry.append(work.get_nowait())
            except queue.Empty:
                break
        if isinstance(error, SendFailure):
            raise NewsletterError(
                f"the SMTP server refused the sender {self.sender}: {error.reply}",
                hint="check email.from and that the server lets this account send as it; "
                f"{self.counts['sent']} messages were sent, a rerun sends the rest",
            )
        if error is not None:
            raise error
        return retry

    def _classify(self, job: _Job, failure: SendFailure | None, retry: list[_Job]) -> Outcome:
        sub = job.subscriber
        if failure is None:
            self.counts["sent"] += 1
            self.per_edition[(sub.edition, "sent")] += 1
            return Outcome(sub.edition, sub.email, DeliveryState.SENT, "accepted")
        if isinstance(failure, PermanentFailure) and not failure.fatal:
            self.counts["failed"] += 1
            self.per_edition[(sub.edition, "failed")] += 1
            log.warning("%s %s: %s (not retried)", self.date, sub.email, failure.reply)
            return Outcome(
                sub.edition, sub.email, DeliveryState.FAILED, failure.reply, failure.hard_bounce
            )
        if not failure.fatal:
            retry.append(job)
        return Outcome(sub.edition, sub.email, DeliveryState.PENDING, failure.reply)

    def _write(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        self.store.record(self.date, outcomes, self.config.email.bounce_limit)
        if self.progress is not None:
            self.progress(self.counts["sent"] + self.counts["failed"], self.total)

    def _worker(
        self,
        transport: Transport,
        work: queue.SimpleQueue[_Job],
        results: queue.SimpleQueue[Any],
        stop: threading.Event,
    ) -> None:
        # Per recipient: a token, a byte splice and the send. Nothing else.
        lost = 0
        try:
            while not (stop.is_set() or self.shutdown.is_set()):
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    break
                sub = job.subscriber
                try:
                    token = sign_token(self.secret, UNSUBSCRIBE, sub.email)
                    message = job.email.personalise(sub.email, sub.name, token)
                    recipient = check_address(sub.email).envelope
                except ValueError as exc:
                    results.put((job, PermanentFailure(sub.email, None, str(exc), False)))
                    continue
                try:
                    transport.send(self.sender, recipient, message)
                except SendFailure as failure:
                    results.put((job, failure))
                    if isinstance(failure, TemporaryFailure) and failure.code is None:
                        lost += 1
                        if lost >= MAX_CONNECTION_FAILURES:
                            log.warning("%s: giving up a connection: %s", self.date, failure.text)
                            break
                    continue
                lost = 0
                results.put((job, None))
        except BaseException as exc:  # reported to the main thread, which re-raises
            results.put((None, exc))
        finally:
            results.put(_DONE)


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
