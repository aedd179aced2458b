"""Paper links for the daemon (`newsletter run`), kept between its ticks.

    links = DaemonLinks(config, now)
    links.open()                              # ConfigError: a bad override file
    digests = links.attach(parsed, previous)  # known links, no network
    relinked = links.reload(digests)          # the override file changed?
    changed = links.find(digests, budget)     # lookups due, within budget

The daemon calls `find` after its sends and gives it the seconds left before
the next send time, so an email never waits for arXiv; it writes again the
pages and feeds of the dates `find` and `reload` return.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.model import Digest

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.papers.attach import PaperLinks

log = logging.getLogger("newsletter")

Signature = tuple[int, int]  # (mtime_ns, size) of a file


def _signature(path: Path) -> Signature | None:
    """(mtime_ns, size) of a file, or None when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


class DaemonLinks:
    """The daemon's PaperLinks (opened once, on first use) and the override
    file's state: its signature when last read, and the last bad one logged.
    now: the daemon's clock (aware)."""

    def __init__(self, config: Config, now: Callable[[], dt.datetime]) -> None:
        self.config = config
        self.now = now
        self.papers: PaperLinks | None = None
        self._read: Signature | None = None
        self._bad: Signature | None = None

    def open(self) -> PaperLinks:
        """The run's paper links; ConfigError for a bad override file. Opened
        again while lookups are on but the database could not be opened."""
        lost = self.papers is not None and not self.papers.lookups_on
        if lost and self.config.papers.lookup != "off":
            self.close()
        if self.papers is None:
            from newsletter.papers.attach import PaperLinks

            signature = _signature(self.config.paths.links)
            self.papers = PaperLinks.open(self.config, now=self.now)
            self._read = signature
        return self.papers

    def close(self) -> None:
        if self.papers is not None:
            self.papers.close()
            self.papers = None

    def attach(self, parsed: Sequence[Digest], previous: Sequence[Digest]) -> list[Digest]:
        """Each parsed digest with its links: as `previous` had them while its
        entries are unchanged, else what the override file and the cache know."""
        papers = self.open()
        kept = {d.date: d for d in previous}
        fresh = [d for d in parsed if getattr(kept.get(d.date), "entries", None) != d.entries]
        linked = {d.date: d for d in papers.offline(fresh)}
        return [linked.get(d.date) or kept[d.date] for d in parsed]

    def reload(self, digests: Sequence[Digest]) -> list[Digest] | None:
        """Read the override file again if it changed since it was last read;
        the digests with the links it now gives, or None when none changed.
        A bad file is logged once (event `bad_links_file`) and the last good
        one kept."""
        from newsletter.errors import ConfigError
        from newsletter.papers.overrides import load_overrides

        papers = self.open()
        path = self.config.paths.links
        signature = _signature(path)
        if signature in (self._read, self._bad):
            return None
        try:
            overrides = load_overrides(path)
        except ConfigError as error:
            self._bad = signature
            log.error(
                "%s; the links file is used as it was before",
                error,
                extra={"event": "bad_links_file", "file": str(path)},
            )
            return None
        self._read, self._bad = signature, None
        papers.use_overrides(overrides)
        log.info("read the links file %s again", path, extra={"event": "links_file"})
        relinked = papers.offline(digests)
        if [d.links for d in relinked] == [d.links for d in digests]:
            return None
        return relinked

    def find(self, digests: Sequence[Digest], budget: float) -> dict[dt.date, Digest]:
        """Look up what is due within `budget` seconds (nothing if it is not
        positive); the digests whose links changed, by date."""
        from newsletter.papers.attach import lookup_due

        papers = self.open()
        if not papers.lookups_on or budget <= 0:
            return {}
        return lookup_due(papers, digests, budget=budget).changed

    def log_after_email(self, dates: Sequence[dt.date]) -> None:
        """Say, for each date whose email already went out, that its links
        changed the site and feeds only (event `links_after_email`)."""
        papers = self.open()
        if papers.store is None:
            return
        for date in dates:
            if papers.store.ledger.issue_emailed(date):
                log.info(
                    "%s: paper links arrived after its email went out: site and feeds "
                    "updated, email not sent again",
                    date.isoformat(),
                    extra={"event": "links_after_email", "date": date.isoformat()},
                )
