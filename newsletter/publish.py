"""One date, by hand or from the scheduler: parse -> paper links -> site and
feeds -> email.

Paper links (newsletter.papers) come first: what the override file and the
cache know for every digest, then, for the date being published, a lookup on
arXiv within papers.budget_seconds (none with --dry-run). The site and feeds
are written next (they can always be rewritten), then the WebSub hub is told
which feeds changed; the email, the irreversible part, goes out last and only
for a digest that parsed cleanly. A bad override file stops all of it before
anything is written.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.digest import DigestReport, Skipped, check_paths, find_digest_files
from newsletter.errors import NewsletterError
from newsletter.model import WEEKDAYS, Digest, IssueId, Week
from newsletter.plurals import nouns

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.deliver.issue import DeliveryReport
    from newsletter.deliver.variants import Mailing
    from newsletter.papers.linking import DigestLinks
    from newsletter.site import SiteResult

log = logging.getLogger("newsletter")


@dataclass(frozen=True)
class Scan:
    """Every digest file in the folder (the good digests and the bad reports),
    and the files skipped as not digests (editor, OS and download leftovers)."""

    reports: tuple[DigestReport, ...]
    skipped: tuple[Skipped, ...] = ()
    folder: Path | None = None  # paths.digests, for messages

    def warnings(self, date: dt.date | None = None) -> tuple[str, ...]:
        """`FILE:LINE: warning` of the good digests (of `date` only, if given),
        such as a missing Korean or English comment."""
        return tuple(
            str(problem)
            for r in self.reports
            if r.ok and r.digest is not None and (date is None or r.digest.date == date)
            for problem in r.warnings
        )

    @property
    def digests(self) -> list[Digest]:
        return sorted(
            (r.digest for r in self.reports if r.ok and r.digest is not None),
            key=lambda d: d.date,
        )

    @property
    def bad(self) -> list[DigestReport]:
        return [r for r in self.reports if not r.ok]

    def digest_for(self, date: dt.date) -> Digest:
        """The one good digest dated `date`; a clear error otherwise."""
        matching = [r for r in self.reports if r.digest is not None and r.digest.date == date]
        problems = [str(p) for r in matching for p in r.errors]
        if problems:
            raise NewsletterError(
                f"the digest for {date.isoformat()} cannot be published:\n  "
                + "\n  ".join(problems),
                hint="fix or remove the file(s) named above, then run again",
            )
        if not matching:
            known = ", ".join(d.date.isoformat() for d in self.digests[-5:]) or "none"
            bad = "".join(f"\n  {p}" for r in self.bad for p in r.errors)
            raise NewsletterError(
                f"no digest dated {date.isoformat()} in {self.folder or 'the digests folder'}"
                + (f"; these files could not be read:{bad}" if bad else ""),
                hint="the date comes from each file's first line, not its name (paths.digests "
                f"is the folder); latest dates found: {known}",
            )
        digest = matching[0].digest
        assert digest is not None
        return digest


@dataclass(frozen=True)
class PublishResult:
    date: IssueId | None
    site: SiteResult
    delivery: DeliveryReport | None
    bad: tuple[DigestReport, ...]
    skipped: tuple[Skipped, ...] = ()
    # The site's warnings (search off, ...) and the WebSub hub's failures.
    warnings: tuple[str, ...] = ()
    # Warnings of the digests published (a missing comment: FILE:LINE).
    digest_warnings: tuple[str, ...] = ()
    # Paper links: the date's (publish), or the digests looked up (build), and
    # how many digests still have papers to look up (left for `run`).
    links: tuple[DigestLinks, ...] = ()
    links_left: int = 0


def scan(config: Config) -> Scan:
    folder = config.paths.digests
    if not folder.is_dir():
        from newsletter.errors import ConfigError

        raise ConfigError(
            f"the digests folder {folder} does not exist (paths.digests)",
            hint="create it, or set paths.digests in the config",
        )
    found = find_digest_files([folder])
    return Scan(tuple(check_paths(found.files, config.limits.digest)), found.skipped, folder)


def publish(
    config: Config,
    date: dt.date,
    *,
    email: bool = True,
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    now: dt.datetime | None = None,
) -> PublishResult:
    """Publish one date: its paper links, its pages, then indexes and feeds,
    then its email.

    Papers of `date` not known yet are looked up on arXiv (not with dry_run);
    every other digest shows the links already known. now: the clock for
    feed items whose text changed (see site.write_site). ConfigError for a bad
    override file, before anything is written.
    """
    from newsletter.papers.attach import PaperLinks
    from newsletter.site import write_site

    found = scan(config)
    found.digest_for(date)  # a clear error for a missing or bad date, first
    with PaperLinks.open(config) as papers:
        digests = papers.offline(found.digests)
        digest = next(d for d in digests if d.date == date)
        if papers.lookups_on and not dry_run:
            digest, _ = papers.lookup(digest)
            digests = [digest if d.date == date else d for d in digests]
        known = papers.known.get(date)
    links = (known,) if known is not None else ()
    site = write_site(config, digests, date=date, dry_run=dry_run, now=now)
    warnings = site.warnings + (() if dry_run else notify_hub(config, site))
    delivery = None
    if email:
        delivery = deliver(config, digest, dry_run=dry_run, force=force, progress=progress)
    return PublishResult(
        date,
        site,
        delivery,
        tuple(found.bad),
        found.skipped,
        warnings,
        found.warnings(date),
        links=links,
    )


def with_known_links(config: Config, digests: list[Digest]) -> list[Digest]:
    """The digests with the paper links already known (the override file and
    the cache), asking arXiv nothing: for previews and test sends."""
    from newsletter.papers.attach import PaperLinks

    with PaperLinks.open(config) as papers:
        return papers.offline(digests)


def notify_hub(config: Config, site: SiteResult) -> tuple[str, ...]:
    """Tell the WebSub hub (feeds.websub_hub) which feeds this run changed;
    its failures come back as warnings (newsletter.feeds.websub)."""
    from newsletter.feeds.websub import changed_feed_urls, ping_hub

    return tuple(ping_hub(config, changed_feed_urls(config, site.written)))


def publish_week(
    config: Config,
    week: Week,
    *,
    email: bool = True,
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    now: dt.datetime | None = None,
) -> PublishResult:
    """Publish one week: its weekly pages and feeds, then the weekly email to
    weekly subscribers (exactly once, like a day's), with the paper links
    already known (no lookup: its days were published and looked up before).

    No issue in the week's seven days: nothing to send (`delivery.note` says
    so). NewsletterError before the week's send time (`schedule.weekly_day`
    at `schedule.send_time`): its last days may still come.
    """
    from newsletter.deliver.variants import Mailing
    from newsletter.send_times import send_datetime
    from newsletter.site.weekly import write_weekly

    now = now or dt.datetime.now(config.site.tz)
    weekly_day = WEEKDAYS.index(config.schedule.weekly_day)
    due = send_datetime(week.send_day(weekly_day), config.schedule.send_clock, config.site.tz)
    if now < due:
        period = week.period(weekly_day)
        raise NewsletterError(
            f"the weekly email of {week} holds {period[0]} to {period[-1]} and is due "
            f"{due.isoformat(timespec='minutes')}: not before",
            hint="wait until then (newsletter run sends it by itself), or give an earlier week",
        )
    found = scan(config)
    # The links already known (override file, cache): the week's pages keep
    # those a build or the daemon gave them, and the weekly email shows them.
    digests = with_known_links(config, found.digests)
    site = write_weekly(config, digests, week, dry_run=dry_run, now=now)
    mailing = Mailing.weekly(week, digests, weekly_day)
    delivery = None
    if email and mailing is None:
        from newsletter.deliver.issue import DeliveryReport

        note = f"{week}: no issue in its seven days, so no weekly email"
        delivery = DeliveryReport(date=week, dry_run=dry_run, no_issue=True, note=note)
    elif email and mailing is not None:
        delivery = deliver(config, mailing, dry_run=dry_run, force=force, progress=progress)
    return PublishResult(week, site, delivery, tuple(found.bad), found.skipped)


def deliver(
    config: Config,
    digest: Digest | Mailing,
    *,
    dry_run: bool = False,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> DeliveryReport:
    from newsletter.deliver.issue import deliver_issue
    from newsletter.store import Store

    with Store.open(config) as store:
        return deliver_issue(config, store, digest, force=force, dry_run=dry_run, progress=progress)


def build(
    config: Config, *, dry_run: bool = False, now: dt.datetime | None = None
) -> PublishResult:
    """Rebuild the whole site and every feed; bad files are reported and skipped.

    Pages show the paper links already known; then (not with dry_run) the
    digests with papers never looked up or due for a retry are looked up,
    newest first, within papers.budget_seconds in all, and what changed is
    written again. What is left is logged: `newsletter run` looks it up.
    ConfigError for a bad override file, before anything is written.
    """
    from newsletter.papers.attach import PaperLinks, lookup_due
    from newsletter.site import write_site

    found = scan(config)
    looked: tuple[DigestLinks, ...] = ()
    left = 0
    with PaperLinks.open(config) as papers:
        digests = papers.offline(found.digests)
        site = write_site(config, digests, date=None, dry_run=dry_run, now=now)
        if papers.lookups_on and not dry_run:
            due = lookup_due(papers, digests, budget=config.papers.budget_seconds)
            looked, left = due.looked, due.left
            if due.changed:
                digests = [due.changed.get(d.date, d) for d in digests]
                site = _merged(site, write_site(config, digests, date=None, now=now))
    if left:
        log.info(
            "%s still %s papers to look up on arXiv; `newsletter run` looks them up, newest first",
            nouns(left, "issue", "issues"),
            "has" if left == 1 else "have",
            extra={"event": "links_left", "issues": left},
        )
    warnings = site.warnings + (() if dry_run else notify_hub(config, site))
    return PublishResult(
        None,
        site,
        None,
        tuple(found.bad),
        found.skipped,
        warnings,
        found.warnings(),
        links=looked,
        links_left=left,
    )


def _merged(first: SiteResult, second: SiteResult) -> SiteResult:
    """Two writes of one build as one result: every file written by either, each once."""
    written = set(first.written) | set(second.written)
    return replace(
        second,
        written=tuple(sorted(written)),
        unchanged=second.unchanged - len(set(first.written) - set(second.written)),
        deleted=first.deleted + second.deleted,
        search_seconds=first.search_seconds + second.search_seconds,
        warnings=tuple(dict.fromkeys(first.warnings + second.warnings)),
    )
