"""`newsletter run`: the daemon that notices digests, publishes, and emails on time.

One tick does everything, so there is a single code path to reason about:
settled files are parsed, changed dates are published at once (with the paper
links already known), every issue whose send time has passed (within
`email.max_lateness_days`) and whose email is not done yet is delivered
through the ledger: each day's issue to daily subscribers at
`schedule.send_time`, and each week's (the seven days before
`schedule.weekly_day`) to weekly subscribers at `send_time` on that day. Only
then are papers looked up on arXiv: new and changed issues' papers, and failed
lookups whose retry time has come, newest issue first, ending before the next
send time, daily or weekly (an email never waits for arXiv). Pages and feeds
whose links changed are written again; emails that went out are not sent
again. An edited override file (paths.links) is read again; a bad one is
logged and the last good one kept. APScheduler runs the tick
`schedule.poll_seconds` after the previous one ended and at each upcoming send
time, on one worker thread; with `bounces.mailbox` set, `bounces process` runs
`bounces.poll_minutes` after the previous one ended, on a thread of its own.
Both polls are one-shot jobs that schedule their next run when they end
(`repeat`): a send or a mailbox read that outlasts its interval is not "missed"
or "skipped" (APScheduler's max-instances warning at every poll), it is simply
still running.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from newsletter.errors import NewsletterError
from newsletter.model import Digest, IssueId, Week
from newsletter.papers.watch import DaemonLinks
from newsletter.plurals import nouns
from newsletter.send_times import SendTimes
from newsletter.watch import DigestFolder, Signature, single_instance

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

# The daemon's wait before retrying an issue with temporary failures, doubling.
RETRY_FIRST = 60.0
RETRY_LONGEST = 3600.0
# Paper lookups in a tick end this long before the next send time.
SEND_MARGIN = 5.0


class Backoff:
    """When to try again each issue that has temporary failures left.

    The wait doubles from RETRY_FIRST seconds up to RETRY_LONGEST (1 min, 2,
    4 ... 1 h): a greylisting or throttling server is not hammered;
    email.max_attempts ends it.
    """

    def __init__(self) -> None:
        # Per issue: (when to try again, the wait that led there in seconds).
        self._next: dict[IssueId, tuple[dt.datetime, float]] = {}

    def waiting(self, issue: IssueId, now: dt.datetime) -> bool:
        """Whether `issue` is still waiting for its next try at `now`."""
        retry = self._next.get(issue)
        return retry is not None and now < retry[0]

    def failed(self, issue: IssueId, now: dt.datetime) -> float:
        """Note a delivery of `issue` that left failures; the wait, in seconds."""
        previous = self._next.get(issue)
        wait = RETRY_FIRST if previous is None else min(previous[1] * 2, RETRY_LONGEST)
        self._next[issue] = (now + dt.timedelta(seconds=wait), wait)
        return wait

    def done(self, issue: IssueId) -> None:
        """`issue` has been emailed: forget its waits."""
        self._next.pop(issue, None)


def _content_hash(digest: Digest) -> str:
    return hashlib.sha256(repr(digest.entries).encode()).hexdigest()


class Daemon:
    """The state between ticks: what was seen, published and scheduled."""

    # One short retry round within a delivery: what still fails stays pending for
    # a later poll, instead of holding the only worker for minutes.
    retry_delays: tuple[float, ...] = (5.0,)

    def __init__(
        self,
        config: Config,
        *,
        now: Callable[[], dt.datetime] | None = None,
        stop: threading.Event | None = None,
        verbose: bool = False,
    ) -> None:
        self.config = config
        self.zone = config.site.tz
        self.now = now or (lambda: dt.datetime.now(self.zone))
        self.stop = stop or threading.Event()
        self.folder = DigestFolder(
            config.paths.digests,
            config.schedule.settle_seconds,
            config.limits.digest,
            verbose=verbose,
        )
        self._processed: dict[Path, Signature] | None = None
        self._published: dict[dt.date, str] = {}
        self._digests: list[Digest] = []
        self._retry = Backoff()
        self._lock = threading.Lock()
        self.times = SendTimes(config)
        self.on_schedule: Callable[[IssueId, dt.datetime], None] = lambda date, when: None
        self.links = DaemonLinks(config, self.now)

    def close(self) -> None:
        self.links.close()

    # -- one tick ------------------------------------------------------------

    def tick(self) -> None:
        with self._lock:
            if self.stop.is_set():
                return
            try:
                self._reload_links_file()
                self._refresh()
                self._send_due()
                self._find_links()
            except NewsletterError as error:
                log.error("%s", error, extra={"event": "error"})
            except OSError as error:  # disk full, permissions: retried next tick
                log.error("cannot write: %s", error, extra={"event": "error"})

    def _refresh(self) -> None:
        settled = self.folder.settled()
        if settled == self._processed:
            return
        first_run = self._processed is None
        digests = self.links.attach(self.folder.read(settled), self._digests)
        changed = [d for d in digests if self._published.get(d.date) != _content_hash(d)]
        removed = set(self._published) - {d.date for d in digests}
        self._digests = digests
        if first_run or removed:
            self._write_site(digests, None)
        else:
            for digest in changed:
                self._write_site(digests, digest)
        if not first_run:
            self._log_changed_after_email(changed)
        self._published = {d.date: _content_hash(d) for d in digests}
        # Only now: if writing failed, the next tick tries again.
        self._processed = settled
        for digest in digests:
            self.on_schedule(digest.date, self.times.day(digest.date))
        for week in self.times.weeks(digests):
            self.on_schedule(week, self.times.week(week))

    # -- paper links (newsletter.papers.watch) -------------------------------

    def _reload_links_file(self) -> None:
        relinked = self.links.reload(self._digests if self._processed is not None else [])
        if relinked is not None:
            self._digests = relinked
            self._write_site(relinked, None)

    def _find_links(self) -> None:
        """After the sends: look up what is due, ending SEND_MARGIN before the
        next send time, and write again the pages and feeds whose links changed."""
        budget = self.config.papers.budget_seconds
        upcoming = self.times.next_send(self._digests, self.now())
        if upcoming is not None:
            budget = min(budget, (upcoming[1] - self.now()).total_seconds() - SEND_MARGIN)
        if self.stop.is_set():
            return
        changed = self.links.find(self._digests, budget)
        if changed:
            self._digests = [changed.get(d.date, d) for d in self._digests]
            only = next(iter(changed.values())) if len(changed) == 1 else None
            self._write_site(self._digests, only)
            self.links.log_after_email(sorted(changed))

    def _log_changed_after_email(self, changed: list[Digest]) -> None:
        from newsletter.store import Store

        if not changed:
            return
        with Store.open(self.config) as store:
            for digest in changed:
                if store.ledger.issue_emailed(digest.date):
                    log.info(
                        "%s changed after its email went out: site updated, email not sent again",
                        digest.date.isoformat(),
                        extra={"event": "changed_after_email", "date": digest.date.isoformat()},
                    )

    def _write_site(self, digests: list[Digest], digest: Digest | None) -> None:
        from newsletter.publish import notify_hub
        from newsletter.site import write_site

        result = write_site(
            self.config, digests, date=digest.date if digest else None, now=self.now()
        )
        for warning in result.warnings + notify_hub(self.config, result):
            log.warning("%s", warning, extra={"event": "site_warning"})
        what = digest.date.isoformat() if digest else "all issues"
        log.info(
            "published %s: %s written, %d deleted",
            what,
            nouns(len(result.written), "file", "files"),
            len(result.deleted),
            extra={
                "event": "published",
                "date": digest.date.isoformat() if digest else None,
                "written": len(result.written),
                "deleted": len(result.deleted),
            },
        )

    # -- sending -------------------------------------------------------------

    def _send_due(self) -> None:
        from newsletter.deliver.variants import Mailing
        from newsletter.store import Store

        now = self.now()
        items: list[Digest | Mailing] = list(self.times.due(self._digests, now))
        for week in self.times.due_weeks(self._digests, now):
            mailing = Mailing.weekly(week, self._digests, self.times.weekly_day)
            if mailing is not None:
                items.append(mailing)
        if not items:
            return
        with Store.open(self.config) as store:
            for item in items:
                issue = item.date if isinstance(item, Digest) else item.issue
                if self.stop.is_set():
                    return
                if store.ledger.issue_emailed(issue):
                    continue
                if self._retry.waiting(issue, self.now()):
                    continue
                self._deliver(store, item)

    def _deliver(self, store: Any, item: Any) -> None:
        from newsletter.deliver.issue import deliver_issue

        issue = item.date if isinstance(item, Digest) else item.issue
        date = issue.isoformat()
        if isinstance(issue, Week):
            # Its page is there (published with its days); the feed gets its item now.
            from newsletter.site.weekly import write_weekly

            write_weekly(self.config, self._digests, issue, now=self.now())
        log.info("sending %s", date, extra={"event": "sending", "date": date})
        report = deliver_issue(
            self.config,
            store,
            item,
            now=self.now(),
            stop=self.stop,
            retry_delays=self.retry_delays,
        )
        log.info(
            "sent %s: %d sent, %d failed, %d skipped, %d left",
            date,
            report.sent,
            report.failed,
            report.skipped,
            report.pending_left,
            extra={
                "event": "sent",
                "date": date,
                "sent": report.sent,
                "failed": report.failed,
                "skipped": report.skipped,
                "pending": report.pending_left,
            },
        )
        if self.stop.is_set():
            return
        if report.pending_left == 0:
            self._retry.done(issue)
            store.ledger.mark_issue_emailed(issue)
        else:
            # Back off between polls (Backoff), not within them.
            wait = self._retry.failed(issue, self.now())
            log.info(
                "%s: %s, next try in %d s",
                date,
                nouns(report.pending_left, "temporary failure", "temporary failures"),
                wait,
                extra={"event": "retry", "date": date, "pending": report.pending_left},
            )


def repeat(
    scheduler: Any,
    job_id: str,
    work: Callable[[], None],
    seconds: float,
    stop: threading.Event,
    zone: dt.tzinfo,
    *,
    executor: str = "default",
) -> None:
    """Run `work` now on `executor`, then `seconds` after each run ended, until `stop`.

    `scheduler` is an APScheduler 3 scheduler. Each run is a one-shot "date"
    job (id `job_id`) that adds the next one when it ends, so a run that
    outlasts the interval is never a second instance: no "maximum number of
    running instances reached" warning, no missed run, however slow the work.
    """

    def run() -> None:
        try:
            work()
        finally:
            if not stop.is_set():
                schedule(seconds)

    def schedule(delay: float) -> None:
        when = dt.datetime.now(zone) + dt.timedelta(seconds=delay)
        scheduler.add_job(
            run, "date", run_date=when, id=job_id, executor=executor, replace_existing=True
        )

    schedule(0)


def run_daemon(config: Config, *, verbose: bool = False) -> None:
    """Run until SIGTERM or SIGINT; then finish the message in flight and exit.

    verbose: log the files of the digests folder that are skipped as not digests.
    """
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    stop = threading.Event()
    with single_instance(config.paths.state):
        daemon = Daemon(config, stop=stop, verbose=verbose)
        daemon.links.open()  # a bad override file: refuse to start (exit 2)
        scheduler = BackgroundScheduler(
            timezone=daemon.zone,
            # Bounce polls have a thread of their own: a slow mailbox never delays a send.
            executors={
                "default": ThreadPoolExecutor(max_workers=1),
                "bounces": ThreadPoolExecutor(max_workers=1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

        def schedule_send(date: IssueId, when: dt.datetime) -> None:
            if when > daemon.now():
                scheduler.add_job(
                    daemon.tick, "date", run_date=when, id=f"send-{date}", replace_existing=True
                )

        daemon.on_schedule = schedule_send

        repeat(scheduler, "poll", daemon.tick, config.schedule.poll_seconds, stop, daemon.zone)
        if config.bounces.mailbox:
            from newsletter.bounces.process import poll

            repeat(
                scheduler,
                "bounces",
                lambda: poll(config, stop),
                config.bounces.poll_minutes * 60,
                stop,
                daemon.zone,
                executor="bounces",
            )

        def request_stop(signum: int, _frame: Any) -> None:
            # Set first: whoever reads "stopping" in the log knows no new work starts.
            stop.set()
            log.info("stopping on %s", signal.Signals(signum).name, extra={"event": "stopping"})

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        log.info(
            "watching %s every %ss; sending at %s %s",
            config.paths.digests,
            config.schedule.poll_seconds,
            config.schedule.send_time,
            config.site.timezone,
            extra={"event": "started", "pid": os.getpid()},
        )
        scheduler.start()
        try:
            while not stop.wait(0.5):
                pass
        finally:
            scheduler.shutdown(wait=True)
            daemon.close()
            log.info("stopped", extra={"event": "stopped"})
