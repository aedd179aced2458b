"""A run's paper links: what is known, attached to digests; lookups where due.

    with PaperLinks.open(config) as papers:        # ConfigError: a bad links file
        digests = papers.offline(digests)           # overrides and cache, no network
        digest, found = papers.lookup(digest)       # arXiv, within papers.budget_seconds

`publish`, `build`, the daemon and `links refresh` share this. With
`papers.lookup: off` no database is opened and only the override file gives
links; with no override file either, digests pass through untouched.
`lookup` logs one `links` event per digest (counts), and a warning naming
each paper whose lookup failed and when it is tried again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.model import Digest
from newsletter.papers.linking import DigestLinks, Linker
from newsletter.papers.links import LinkStatus, utcnow
from newsletter.plurals import nouns

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.papers.overrides import Overrides
    from newsletter.store import Store

log = logging.getLogger("newsletter.links")


class PaperLinks:
    """The override file, the link cache and one arXiv client, for one run.

    `known` holds the last DigestLinks of each date this object attached or
    looked up. A context manager: close() closes the client and the database.
    """

    def __init__(
        self, config: Config, linker: Linker, store: Store | None, *, enabled: bool
    ) -> None:
        self.config = config
        self.linker = linker
        self.store = store
        self.enabled = enabled
        self.known: dict[dt.date, DigestLinks] = {}

    @classmethod
    def open(cls, config: Config, *, now: Callable[[], dt.datetime] = utcnow) -> PaperLinks:
        """Read the override file (ConfigError, exit 2, if it is bad) and, with
        lookups on, open the database; a database that cannot be opened is a
        warning and a run without lookups (the site does not depend on the
        cache). now: the clock of retry times (aware)."""

        def utc() -> dt.datetime:
            return now().astimezone(dt.UTC).replace(microsecond=0)

        linker = Linker.from_config(config, None, utc)  # reads the override file first
        store = None
        if config.papers.lookup != "off":
            from newsletter.errors import NewsletterError
            from newsletter.store import Store

            try:
                store = Store.open(config)
            except NewsletterError as error:  # the site must not depend on the cache
                log.warning(
                    "paper links: %s; no lookups this run, pages show only the links "
                    "of the override file",
                    error.message,
                    extra={"event": "links_unavailable"},
                )
            else:
                linker.cache = store.links
        overrides = linker.overrides
        enabled = store is not None or bool(overrides.by_title or overrides.by_position)
        return cls(config, linker, store, enabled=enabled)

    def use_overrides(self, overrides: Overrides) -> None:
        """Use these overrides from now on (the daemon read the file again)."""
        self.linker.overrides = overrides
        self.enabled = self.lookups_on or bool(overrides.by_title or overrides.by_position)

    @property
    def lookups_on(self) -> bool:
        """Whether papers are looked up on arXiv (papers.lookup is not off)."""
        return self.store is not None

    def close(self) -> None:
        self.linker.close()
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> PaperLinks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def offline(self, digests: Sequence[Digest]) -> list[Digest]:
        """Each digest with the links the override file and the cache know; no
        network, one cache read for all (`Linker.known`)."""
        if not self.enabled:
            return list(digests)
        found = self.linker.known(digests)
        for links in found:
            self.known[links.date] = links
        return [d.with_links(links.links) for d, links in zip(digests, found, strict=True)]

    def due(self, digest: Digest) -> bool:
        """Whether `digest` has papers never looked up, or failures whose retry
        time has come (after `offline` or `lookup` saw it)."""
        links = self.known.get(digest.date)
        return self.lookups_on and links is not None and links.due(self.linker.now())

    def next_retry(self) -> dt.datetime | None:
        """The earliest retry time (UTC) among the digests seen, or None."""
        times = [links.next_retry for links in self.known.values() if links.next_retry]
        return min(times, default=None)

    def lookup(
        self, digest: Digest, *, refresh: bool = False, budget: float | None = None
    ) -> tuple[Digest, DigestLinks]:
        """The digest with its links after asking arXiv for what is not known
        (everything with `refresh`), within `budget` seconds (default
        papers.budget_seconds); never raises for arXiv trouble."""
        links = self.linker.links_for(digest, refresh=refresh, budget=budget)
        self.known[digest.date] = links
        _log_lookups(digest, links)
        return digest.with_links(links.links), links


def _log_lookups(digest: Digest, links: DigestLinks) -> None:
    date = digest.date.isoformat()
    found, missing, failed = (links.count(s) for s in LinkStatus)
    log.info(
        "links for %s: %d found, %d not found, %d failed (%s)",
        date,
        found,
        missing,
        failed,
        nouns(links.requests, "request", "requests"),
        extra={
            "event": "links",
            "date": date,
            "found": found,
            "not_found": missing,
            "failed": failed,
            "requests": links.requests,
        },
    )
    if links.out_of_time:
        log.warning(
            "links for %s: the lookups' budget ran out (papers.budget_seconds); %s left for later",
            date,
            nouns(failed, "paper", "papers"),
            extra={"event": "links_budget", "date": date, "left": failed},
        )
    if failed:
        retry = links.next_retry
        log.warning(
            "links for %s: %s without a link for now (%s); tried again after %s",
            date,
            nouns(failed, "paper", "papers"),
            next(lk.reason for lk in links.lookups if lk.status is LinkStatus.FAILED),
            retry.isoformat() if retry else "the next run",
            extra={
                "event": "links_failed",
                "date": date,
                "failed": failed,
                "retry_after": retry.isoformat() if retry else None,
            },
        )


@dataclass(frozen=True)
class DueLookups:
    """What `lookup_due` did: the digests whose links changed (by date, with
    their new links), each digest's lookups (newest first), and how many due
    digests were left for later."""

    changed: dict[dt.date, Digest]
    looked: tuple[DigestLinks, ...]
    left: int


def lookup_due(
    papers: PaperLinks,
    digests: Sequence[Digest],
    *,
    budget: float,
    refresh: bool = False,
    clock: Callable[[], float] | None = None,
) -> DueLookups:
    """Look up the due digests (see PaperLinks.due; with `refresh`, all of them,
    found papers too), newest first, within `budget` seconds in all (`clock`:
    monotonic seconds); each digest gets what is left, at most
    papers.budget_seconds. After a digest whose lookups failed just now
    (arXiv unwell, or out of time) the rest wait for a later run."""
    import time

    clock = clock or time.monotonic
    due = sorted(
        (d for d in digests if refresh or papers.due(d)), key=lambda d: d.date, reverse=True
    )
    deadline = clock() + budget
    changed: dict[dt.date, Digest] = {}
    looked: list[DigestLinks] = []
    for digest in due:
        left = deadline - clock()
        if left <= 0.05:
            break
        linked, links = papers.lookup(
            digest, refresh=refresh, budget=min(left, papers.config.papers.budget_seconds)
        )
        looked.append(links)
        if linked.links != digest.links:
            changed[digest.date] = linked
        if links.out_of_time or any(
            lk.status is LinkStatus.FAILED and lk.source == "arxiv" for lk in links.lookups
        ):
            break  # arXiv failed just now: the rest wait for a later run
    return DueLookups(changed, tuple(looked), len(due) - len(looked))
