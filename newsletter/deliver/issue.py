"""Send one issue to every active subscriber, exactly once: `deliver_issue`.

An issue is a day's (to daily subscribers) or a week's (to weekly
subscribers): `variants.Mailing`. Order of work: count the plan by edition
and topics (who still needs this issue), render every variant once (an
edition of the issue, or of the papers some readers' topics pick:
`variants.Variants`), start the workers, each opening its connection (a bad server fails here,
before anything is marked), then page through the plan (keyset pages of
`run.PAGE` subscribers: memory stays flat however long the list): write the
page's 'pending' ledger rows, hand its messages to the workers (`run.SendRun`).

Retries: 4xx and lost connections are retried in rounds with a backoff
(`retry_delays`), a bounded number of times; what still fails stays 'pending'
and a rerun tries again. A 5xx for the recipient is 'failed' for good; a
refused mailbox counts a hard bounce and `email.bounce_limit` bounces mark the
subscriber bounced. A 5xx for the message itself stops that message (its variant) with every
row still 'pending' (`DeliveryReport.refused`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.bounces.verp import Verp
from newsletter.deliver.run import ProgressCallback, SendRun
from newsletter.deliver.variants import Mailing, Variants
from newsletter.deliver.workers import TransportFactory, WorkContext, make_pool
from newsletter.headers import check_address
from newsletter.mail import check_sendable, resolve_secret
from newsletter.mail_checks import setup_warnings
from newsletter.model import Digest, Edition, IssueId, Subscriber
from newsletter.plurals import nouns

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.deliver.wire import Job
    from newsletter.store import Store

log = logging.getLogger("newsletter")

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (5.0, 30.0, 120.0)


@dataclass(frozen=True)
class EditionCounts:
    """Messages of one edition in one run, by outcome."""

    sent: int = 0
    failed: int = 0
    pending: int = 0


@dataclass(frozen=True)
class DeliveryReport:
    """What one run did. `recipients` is filled only for dry runs; `seconds` is
    the whole run, `messages_per_second` the sending part only."""

    date: IssueId
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    pending_left: int = 0
    # Subscribers whose topics picked no paper of the issue: no email, by rule.
    filtered: int = 0
    # Distinct emails rendered (editions x letters), and distinct topic sets.
    variants: int = 0
    topic_sets: int = 0
    seconds: float = 0.0
    per_edition: Mapping[str, EditionCounts] = field(default_factory=dict)
    messages_per_second: float = 0.0
    dry_run: bool = False
    too_late: bool = False
    no_issue: bool = False  # a week without an issue: no weekly email
    recipients: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    note: str = ""
    # Editions a message of which the server refused (a message-level 5xx), with its
    # reply: their messages were not sent and stay pending for a rerun.
    refused: Mapping[str, str] = field(default_factory=dict)


def deliver_issue(
    config: Config,
    store: Store,
    digest: Digest | Mailing,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: ProgressCallback | None = None,
    now: dt.datetime | None = None,
    transport_factory: TransportFactory | None = None,
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Email the issue to every active subscriber of its cadence not yet sent it.

    `digest`: a day's issue (the daily email), or a `Mailing` (a weekly one).

    Setting `stop` (SIGTERM in the daemon) lets the messages in flight finish,
    records them, and returns with the rest still pending for the next run.

    `progress(done, total)` is called from this thread after each ledger write
    (done = sent + failed). `transport_factory` overrides email.transport (tests,
    library users; its transports run in threads of this process);
    `retry_delays` are the waits (seconds) before each retry round.

    NewsletterError if another process is sending this date, the transport
    cannot connect or log in (nothing is marked then), or the server refuses
    the sender.
    """
    now = now or dt.datetime.now(config.site.tz)
    mailing = digest if isinstance(digest, Mailing) else Mailing.daily(digest)
    date = mailing.issue
    late = (now.astimezone(config.site.tz).date() - mailing.due).days
    if late > config.email.max_lateness_days and not force:
        # Not logged: the caller says it once, in its own terms (the CLI names --force).
        note = (
            f"{date} is {late} days old (email.max_lateness_days = "
            f"{config.email.max_lateness_days}): not emailed"
        )
        return DeliveryReport(date=date, too_late=True, dry_run=dry_run, note=note)

    if dry_run:
        return _plan_only(config, store, mailing)

    # One sender per database at a time: two would both see everyone as not
    # done yet and both send. Planning happens under the lock.
    with store.db.sending_lock(date):
        return _send(config, store, mailing, now, progress, transport_factory, retry_delays, stop)


def _plan_only(config: Config, store: Store, mailing: Mailing) -> DeliveryReport:
    """What a real run would do now: the same plan and the same counts, nothing sent."""
    date = mailing.issue
    groups_, skipped = store.plan.groups(
        date, config.editions, cadence=mailing.cadence, day=mailing.decides
    )
    variants = Variants(mailing, groups_)
    todo, _ = store.plan.todo(date, config.editions, cadence=mailing.cadence, day=mailing.decides)
    groups: dict[Edition, list[Subscriber]] = {}
    for subscriber in todo:
        if variants.of(subscriber) is not None:
            groups.setdefault(subscriber.edition, []).append(subscriber)
    recipients = {
        e.value: tuple(s.email for s in groups[e]) for e in config.editions if e in groups
    }
    per = {e: EditionCounts(pending=len(r)) for e, r in recipients.items()}
    by_edition = "".join(f", {len(r)} {e}" for e, r in recipients.items())
    count = sum(len(r) for r in recipients.values())
    messages = nouns(count, "message", "messages")
    note = f"dry run: {messages} would be sent for {date}{by_edition}"
    return DeliveryReport(
        date=date,
        skipped=skipped,
        pending_left=count,
        filtered=variants.filtered,
        variants=len(variants.variants),
        topic_sets=variants.topic_sets,
        per_edition=per,
        dry_run=True,
        recipients=recipients,
        note=note,
    )


def _send(
    config: Config,
    store: Store,
    mailing: Mailing,
    now: dt.datetime,
    progress: ProgressCallback | None,
    transport_factory: TransportFactory | None,
    retry_delays: Sequence[float],
    stop: threading.Event | None,
) -> DeliveryReport:
    started = time.monotonic()
    date = mailing.issue
    groups, skipped = store.plan.groups(
        date, config.editions, cadence=mailing.cadence, day=mailing.decides
    )
    variants = Variants(mailing, groups)
    # In the order of config.editions, as the per-edition report always was.
    planned = variants.in_order(config.editions)
    total = sum(planned.values())
    counts = {"filtered": variants.filtered, "topic_sets": variants.topic_sets}
    if not total:
        note = f"{date}: nothing to send ({skipped} already done, {variants.filtered} no paper)"
        log.info(note)
        return DeliveryReport(date=date, skipped=skipped, note=note, **counts)

    check_sendable(config)
    for warning in setup_warnings(config):
        log.warning("%s", warning)
    secret = resolve_secret(config, smtp=config.email.transport == "smtp")
    emails = variants.build(config, now)
    log.info(
        "%s: %s rendered for %s (%s)",
        date,
        nouns(len(emails), "email", "emails"),
        nouns(total, "subscriber", "subscribers"),
        nouns(variants.topic_sets, "topic set", "topic sets"),
    )
    context = WorkContext(
        emails=dict(enumerate(emails)),
        secret=secret,
        sender=check_address(config.email.sender_address).envelope,
        date=date,
        verp=Verp(secret, config.email.bounce_address) if config.email.bounce_address else None,
    )
    stop = stop or threading.Event()
    pool = make_pool(config, context, total, transport_factory)
    run = SendRun(config, store.plan, store.ledger, date, pool, progress, total, stop)
    run.variants = set(range(len(emails)))
    send_started = time.monotonic()
    try:
        # Start-up check: a bad host/TLS/password raises before anything is marked.
        pool.start()
        send_started = time.monotonic()
        source = run.plan(config.editions, mailing, variants)
        jobs: Iterator[Job] = source
        for attempt in range(len(retry_delays) + 1):
            retry = run.round(jobs)
            jobs = itertools.chain(retry, source) if run.source_left else iter(retry)
            if not retry and not run.source_left:
                break
            if attempt == len(retry_delays) or stop.is_set() or run.halted:
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
    # Someone who changed edition or topics after the emails were built is
    # left for the next run (they are in `total`, so they count as left).
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
        refused=_refused_by_edition(run.refused, variants),
        variants=len(emails),
        **counts,
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


def _refused_by_edition(refused: Mapping[int, str], variants: Variants) -> dict[str, str]:
    """{edition value: the server's reply} from {variant index: reply}: the first
    refusal of each edition (its variants differ only by the papers they hold)."""
    out: dict[str, str] = {}
    for index, reply in sorted(refused.items()):
        out.setdefault(variants.variants[index].edition.value, reply)
    return out
