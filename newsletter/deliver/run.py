"""One sending run: jobs out to the workers, outcomes into the ledger, exactly once.

A message is marked 'sent' only after the server accepted it. This process is
the only database writer and does "group commits": it waits for the next
results, then writes everything that arrived meanwhile in one transaction, at
most every max(10 ms, 3 × a commit's own time). A kill -9 therefore repeats on
the next run at most the messages accepted but not yet committed: those
gathered since the last commit (about 50 at 5,000 messages a second), and per
connection the message whose result is not yet reported (with an envelope sent
ahead, until the relay has answered that envelope too). SIGTERM and Ctrl-C wait
until a batch of results is handled, then record what is in flight.

Classification (`smtp_replies`): accepted is 'sent'; a 5xx for the recipient
is 'failed' for good (a refused mailbox is a hard bounce); a 4xx or a lost
connection stays 'pending' and is handed back for the next retry round. A 5xx
for the message itself (after DATA: too large, transaction failed) is the same
for everyone who gets that message (its variant: an edition, of every paper or
of some readers' topics): that variant stops, its rows stay 'pending' with
nothing recorded against anyone, and `refused` says why (a rerun sends them).
A fatal failure (the server refuses the sender, the outbox cannot be written)
stops the run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from newsletter.deliver import wire
from newsletter.errors import NewsletterError
from newsletter.headers import check_address
from newsletter.model import Edition, IssueId
from newsletter.plurals import nouns
from newsletter.signals import signals_held
from newsletter.smtp_replies import Scope
from newsletter.store.ledger import DeliveryState, Outcome
from newsletter.transports.failures import PermanentFailure, SendFailure

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.deliver.variants import Mailing, Variants
    from newsletter.deliver.workers import Pool
    from newsletter.store.ledger import Ledger
    from newsletter.store.plan import Plan

log = logging.getLogger("newsletter")

_MAX_BATCH = 2000
# Subscribers read (and marked pending) per page of the plan. While a page is
# read the workers live on what they hold (2 * _CHUNK each): a page must take
# less time than that, or they wait (at 100,000 subscribers a page of 2,000
# took ~25 ms, longer than their 64 jobs lasted: ~8% of the sending time).
PAGE = 1000
# Jobs handed to a worker at a time; it gets more when it has fewer than this.
_CHUNK = 64
# After a wait that brought fewer than this many results, let them gather this
# long (seconds) before the next. Each wake-up costs the main process ~30 us of
# CPU that the workers and the relay need: at ~6,000 msg/s it woke ~3,000
# times a second for two results each. The workers hold up to 2 * _CHUNK jobs
# (~40 ms of sending), so they never wait for it; a result is recorded at
# most 2 ms later (the group commit gathers for 10 ms anyway). In alternating
# runs the process tree's CPU fell by ~6% at 100,000 subscribers.
_GATHER_BELOW = 8
_GATHER = 0.002
# At most this share of the main process's time goes to ledger writes.
_WRITE_SHARE = 0.25
# And at least this long (seconds) between two writes while results keep coming.
_MIN_GATHER = 0.01

# progress(done, total): done = sent + failed so far.
ProgressCallback = Callable[[int, int], None]


class SendRun:
    """The sending part of one delivery: hands jobs to the workers, writes the ledger.

    `counts` ('sent', 'failed') and `per_edition` ((edition value, state)) count
    what this run recorded.
    """

    def __init__(
        self,
        config: Config,
        plan: Plan,
        ledger: Ledger,
        date: IssueId,
        pool: Pool,
        progress: ProgressCallback | None,
        total: int,
        shutdown: threading.Event,
    ) -> None:
        self.config = config
        self.planned = plan
        self.ledger = ledger
        self.date = date
        self.pool = pool
        self.progress = progress
        self.total = total
        self.shutdown = shutdown
        self.counts: Counter[str] = Counter()
        self.per_edition: Counter[tuple[str, str]] = Counter()
        self.source_left = True
        # Planned subscribers whose edition or topics changed after the emails
        # were built: not sent now (the next run has an email for them).
        self.changed = 0
        self._number = 0
        self._next_write = 0.0
        # (edition, address) of temporary failures that reached email.max_attempts.
        self._abandoned: set[tuple[str, str]] = set()
        # Variants whose message the server refused (message-level 5xx): the reply.
        self.refused: dict[int, str] = {}
        # The variants this run sends (set by the caller); all refused: nothing
        # left to do.
        self.variants: set[int] = set()

    def plan(
        self, editions: Sequence[Edition], mailing: Mailing, variants: Variants
    ) -> Iterator[wire.Job]:
        """Jobs page by page; a page's 'pending' rows are written before its jobs go out.

        Each subscriber gets the variant of their edition and topics; one whose
        topics pick no paper gets nothing (no ledger row).
        """
        pages = self.planned.recipients(
            self.date, editions, page=PAGE, cadence=mailing.cadence, day=mailing.decides
        )
        for page in pages:
            kept = []
            for sub in page:
                variant = variants.of(sub)
                if variant is not None:
                    kept.append((sub, variant))
                elif not variants.is_filtered(sub):
                    self.changed += 1
            self.ledger.start_deliveries(self.date, [sub for sub, _ in kept])
            for sub, variant in kept:
                self._number += 1
                yield (self._number, sub.email, sub.name, sub.edition.value, sub.id or 0, variant)

    def round(self, jobs: Iterator[wire.Job]) -> list[wire.Job]:
        """Send jobs once each; return those that failed temporarily.

        `source_left` is True afterwards if `jobs` was not used up: every
        connection gave up (the next round takes the rest) or a stop was requested.
        NewsletterError if every worker has stopped, or the server refused the sender.
        """
        pool = self.pool
        if not pool.open:
            raise NewsletterError(
                "every delivery worker has stopped", hint="see the log; a rerun sends the rest"
            )
        retry: list[wire.Job] = []
        # Per worker: the jobs it holds (queued or in flight), by number.
        assigned: list[dict[int, wire.Job]] = [{} for _ in range(pool.size)]
        given_up = [w not in pool.open for w in range(pool.size)]
        stopping = False
        exhausted = False
        error: BaseException | None = None
        outcomes: list[Outcome] = []  # accepted (or failed), not yet in the ledger
        got = 0  # results taken by the last wait
        try:
            while True:
                if not stopping and (self.shutdown.is_set() or error is not None or self.halted):
                    stopping = True
                    for w in range(pool.size):
                        pool.send(w, (wire.STOP,))
                if not stopping and not exhausted:
                    exhausted = self._dispatch(jobs, assigned, given_up)
                busy = any(assigned)
                if not busy and (stopping or exhausted or all(given_up)):
                    break
                wait = self._next_write - time.monotonic() if outcomes else 0.2
                if got and got < _GATHER_BELOW and not stopping:
                    time.sleep(_GATHER)
                # A signal waits until the batch is handled: taken from the
                # workers and not handled, its results would be lost.
                with signals_held():
                    got, error = self._take(pool, wait, assigned, retry, given_up, outcomes, error)
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
            rest = f"{self.counts['sent']} messages were sent, a rerun sends the rest"
            if error.scope is not Scope.SENDER:
                raise NewsletterError(f"delivery stopped: {error.text}", hint=rest)
            sender = check_address(self.config.email.sender_address).envelope
            raise NewsletterError(
                f"the SMTP server refused the sender {sender}: {error.reply}",
                hint=f"check email.from and that the server lets this account send as it; {rest}",
            )
        if error is not None:
            raise error
        return [
            job
            for job in retry
            if (job[3], job[1].lower()) not in self._abandoned and job[5] not in self.refused
        ]

    @property
    def halted(self) -> bool:
        """Whether the server refused every message (variant) this run sends."""
        return bool(self.variants) and self.variants <= set(self.refused)

    def _dispatch(
        self, jobs: Iterator[wire.Job], assigned: list[dict[int, wire.Job]], given_up: list[bool]
    ) -> bool:
        """Top up every working connection that holds fewer than a chunk to two
        chunks, handing out a chunk at a time in turn (a short list is shared by
        the connections, not all given to the first); True when `jobs` ran out."""
        hungry = [w for w, held in enumerate(assigned) if not given_up[w] and len(held) < _CHUNK]
        while hungry:
            for w in hungry:
                held = assigned[w]
                want = min(_CHUNK, 2 * _CHUNK - len(held))
                taken = list(itertools.islice(jobs, want))
                # A refused variant's jobs are not sent: their rows stay pending.
                chunk = [job for job in taken if job[5] not in self.refused]
                if chunk:
                    held.update((job[0], job) for job in chunk)
                    self.pool.send(w, (wire.JOBS, chunk))
                if len(taken) < want:
                    return True
            hungry = [w for w in hungry if len(assigned[w]) < 2 * _CHUNK]
        return False

    def _take(
        self,
        pool: Pool,
        wait: float,
        assigned: list[dict[int, wire.Job]],
        retry: list[wire.Job],
        given_up: list[bool],
        outcomes: list[Outcome],
        error: BaseException | None,
    ) -> tuple[int, BaseException | None]:
        """Take the results that have arrived (waiting up to `wait` seconds for
        the first) and handle each: outcomes to record, jobs to send again,
        workers that gave up. Returns how many were taken and the first error."""
        results = pool.results(timeout=max(0.0, wait), limit=_MAX_BATCH)
        for w, message in results:
            kind = message[0]
            if kind == wire.DONE:
                job = assigned[w].pop(message[1])
                failure = wire.failure_from_wire(message[2])
                outcome = self._classify(job, failure, retry)
                if outcome is not None:
                    outcomes.append(outcome)
                if failure is not None and failure.fatal:
                    error = error or failure
            elif kind == wire.DROPPED:
                # Jobs a worker will not send (it gave up its connection,
                # or was asked to stop): sent again later, nothing recorded.
                # Those of a refused variant stay pending for a rerun.
                dropped = [assigned[w].pop(number) for number in message[1]]
                if message[2] != wire.REFUSED:
                    retry.extend(dropped)
                given_up[w] = given_up[w] or message[2] == wire.GAVE_UP
            elif kind == wire.ERROR:
                error = error or RuntimeError(f"a delivery worker failed:\n{message[1]}")
                given_up[w] = True
            elif kind == wire.LOST:
                # The worker died: what it held stays pending (one of them
                # may have been accepted, as after a crash).
                given_up[w] = True
                retry.extend(assigned[w].values())
                assigned[w].clear()
        return len(results), error

    def _salvage(
        self,
        assigned: list[dict[int, wire.Job]],
        retry: list[wire.Job],
        outcomes: list[Outcome],
    ) -> None:
        """After an exception here: stop the workers and record what they still report."""
        for w in range(self.pool.size):
            self.pool.send(w, (wire.STOP,))
        held = sum(len(jobs) for jobs in assigned)
        log.info(
            "%s: stopping: waiting for the messages in flight (%d queued or sending), "
            "to record them",
            self.date,
            held,
        )
        deadline = time.monotonic() + self.config.email.smtp.timeout + 5
        with contextlib.suppress(Exception):
            while any(assigned) and self.pool.open and time.monotonic() < deadline:
                for w, message in self.pool.results(timeout=0.2, limit=_MAX_BATCH):
                    if message[0] == wire.DONE and message[1] in assigned[w]:
                        job = assigned[w].pop(message[1])
                        failure = wire.failure_from_wire(message[2])
                        outcome = self._classify(job, failure, retry)
                        if outcome is not None:
                            outcomes.append(outcome)
                    elif message[0] == wire.DROPPED:
                        for number in message[1]:
                            assigned[w].pop(number, None)
                    elif message[0] == wire.LOST:
                        assigned[w].clear()
        try:
            self._write(outcomes)
        except Exception as exc:  # the original error is what the caller must see
            accepted = sum(o.state == DeliveryState.SENT for o in outcomes)
            log.error(
                "%s: %s could not be recorded (%d accepted by the server: a rerun "
                "sends those again): %s",
                self.date,
                nouns(len(outcomes), "outcome", "outcomes"),
                accepted,
                exc,
            )
            return
        log.info(
            "%s: stopped: %d sent in this run are recorded; a rerun sends the rest",
            self.date,
            self.counts["sent"],
        )

    def _classify(
        self, job: wire.Job, failure: SendFailure | None, retry: list[wire.Job]
    ) -> Outcome | None:
        """The ledger outcome of one job; a temporary failure also goes to `retry`.

        None for a message-level refusal: nothing is recorded against the
        recipient, the row stays pending and the variant stops (`refused`).
        """
        email, edition_value, variant = job[1], job[3], job[5]
        edition = Edition(edition_value)
        if failure is None:
            self.counts["sent"] += 1
            self.per_edition[(edition_value, "sent")] += 1
            return Outcome(edition, email, DeliveryState.SENT, "accepted")
        if failure.permanent and failure.scope is Scope.MESSAGE:
            if variant not in self.refused:
                self.refused[variant] = failure.reply
                log.error(
                    "%s %s edition: the server refused the message itself (%s): "
                    "it is not sent again in this run, nobody is marked failed; "
                    "a rerun sends it",
                    self.date,
                    edition_value,
                    failure.reply,
                )
            return None
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
        `_WRITE_SHARE` of its time writing, and at least `_MIN_GATHER`: at high
        rates batches grow (the CPU goes to the workers); at low rates every
        message is written at once.

        The floor matters because a commit costs about the same for 5 messages
        as for 50 (~0.3 ms against ~0.45 ms of CPU): with the share alone, a
        cheap write was followed by another a millisecond later, and at
        ~5,000 messages/s the main process spent ~30 us of CPU per message on
        commits of ~10, on a machine whose two cores the workers and the relay
        need. A kill -9 repeats at most what was gathered meanwhile (10 ms of
        sending: ~50 messages at 5,000/s)."""
        if not outcomes:
            return
        started = time.monotonic()
        email = self.config.email
        for o in self.ledger.record(self.date, outcomes, email.bounce_limit, email.max_attempts):
            self.counts["failed"] += 1
            self.per_edition[(o.edition.value, "failed")] += 1
            self._abandoned.add((o.edition.value, o.email.lower()))
            log.warning("%s %s: %s", self.date, o.email, o.reply)
        if self.progress is not None:
            self.progress(self.counts["sent"] + self.counts["failed"], self.total)
        ended = time.monotonic()
        self._next_write = ended + max(_MIN_GATHER, (ended - started) * (1 / _WRITE_SHARE - 1))
