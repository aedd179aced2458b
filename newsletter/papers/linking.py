"""Which link each paper of a digest gets: override, cache, or an arXiv lookup.

For each paper, in order of precedence:

1. the override file (`paths.links`), by date and position, then by title;
2. nothing more when `papers.lookup` is `off`;
3. the cache: a found or not_found row is final (until `refresh`); a failed
   row is kept until its retry time;
4. a lookup on arXiv, within `papers.budget_seconds` for the whole digest.
   A failure is cached with a retry time that backs off with the attempts
   (or arXiv's Retry-After, if longer); a failed refresh keeps what was known.

`Linker.links_for` never raises for arXiv or database trouble: the worst case
is a digest without links and a warning in the log.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from newsletter.model import Digest
from newsletter.papers.links import LinkStatus, Lookup, PaperLink, utcnow
from newsletter.papers.overrides import Overrides, load_overrides

if TYPE_CHECKING:
    from newsletter.config import Config, PapersConfig
    from newsletter.papers.arxiv import ArxivClient
    from newsletter.store.links import CachedLink, LinkCache

log = logging.getLogger("newsletter.links")

NOT_YET = "not looked up yet"
FIRST_RETRY = 300.0  # seconds after the first failure; doubles with each one
MAX_RETRY = 24 * 3600.0


def backoff(attempts: int) -> dt.timedelta:
    """Wait after the `attempts`-th failure in a row: 5 min, 10, 20 ... up to a day."""
    return dt.timedelta(seconds=min(MAX_RETRY, FIRST_RETRY * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class DigestLinks:
    """One Lookup per entry of a digest, in the digest's order."""

    date: dt.date
    lookups: tuple[Lookup, ...]
    requests: int = 0  # HTTP requests made for this digest
    out_of_time: bool = False  # the budget ran out before every paper was tried
    titles: tuple[str, ...] = ()  # the entries' titles, for reports

    @property
    def links(self) -> tuple[PaperLink | None, ...]:
        """What outputs show: a link per entry, or None."""
        return tuple(lookup.link for lookup in self.lookups)

    @property
    def next_retry(self) -> dt.datetime | None:
        """When a failed lookup of this digest is due again (UTC), or None."""
        times = [lk.retry_after for lk in self.lookups if lk.retry_after is not None]
        return min(times, default=None)

    def count(self, status: LinkStatus) -> int:
        return sum(lookup.status is status for lookup in self.lookups)

    def due(self, now: dt.datetime) -> bool:
        """Whether a lookup of this digest is worth making at `now` (aware):
        a paper never looked up, or a failure whose retry time has come."""
        return any(
            lookup.status is LinkStatus.FAILED
            and (lookup.retry_after is None or lookup.retry_after <= now)
            for lookup in self.lookups
        )


def make_client(config: Config, now: Callable[[], dt.datetime] = utcnow) -> ArxivClient:
    """The arXiv client for `config`: its endpoint, timeout, interval and a
    User-Agent that names the site and the sender address, as the arXiv API
    asks. now: the clock of retry times (aware UTC)."""
    from newsletter.papers.arxiv import ArxivClient, default_user_agent

    contact = f"+{config.site.base_url}; mailto:{config.email.sender_address}"
    return ArxivClient(
        api_url=config.papers.arxiv_api_url,
        timeout=config.papers.timeout,
        user_agent=default_user_agent(contact),
        min_interval=config.papers.interval_seconds,
        now=now,
    )


class Linker:
    """Finds the links of digests, one at a time; keeps one arXiv client (and
    so one connection and one rate limit) for all of them. Not thread-safe.

    cache: None to neither read nor write cached lookups. client_factory:
    makes the ArxivClient the first time one is needed (no network, and no
    HTTP library import, while everything is cached). now: aware UTC time.
    """

    def __init__(
        self,
        papers: PapersConfig,
        *,
        overrides: Overrides | None = None,
        cache: LinkCache | None = None,
        client_factory: Callable[[], ArxivClient] | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.papers = papers
        self.overrides = overrides or Overrides()
        self.cache = cache
        self._factory = client_factory
        self._client: ArxivClient | None = None
        self.now = now

    @classmethod
    def from_config(
        cls,
        config: Config,
        cache: LinkCache | None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> Linker:
        """A Linker as configured (now: its clock, aware UTC); ConfigError if
        the override file is bad."""
        return cls(
            config.papers,
            overrides=load_overrides(config.paths.links),
            cache=cache,
            client_factory=lambda: make_client(config, now),
            now=now,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Linker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def links_for(
        self,
        digest: Digest,
        *,
        refresh: bool = False,
        offline: bool = False,
        budget: float | None = None,
    ) -> DigestLinks:
        """A Lookup per entry.

        refresh: look up again even what is cached. offline: ask arXiv nothing,
        give what the overrides and the cache know (for rebuilding pages);
        a paper never looked up fails with 'not looked up yet'. budget:
        seconds for this digest's lookups (default papers.budget_seconds).
        """
        if offline:
            return self.known([digest])[0]
        now = self.now()
        entries = digest.entries
        result, keys = self._plan(digest)
        cached = self._read(keys.values())
        ask = []
        for index, key in keys.items():
            row = cached.get(key)
            if row is not None and not refresh and _still_valid(row, now):
                result[index] = row.lookup
            else:
                ask.append(index)
        requests, out_of_time = 0, False
        if ask:
            lookups, tried, requests, out_of_time = self._ask(
                [(entries[i].title, entries[i].authors) for i in ask],
                self.papers.budget_seconds if budget is None else budget,
            )
            for n, (index, lookup) in enumerate(zip(ask, lookups, strict=True)):
                row = cached.get(keys[index])
                if n >= tried:  # never reached arXiv: nothing learnt, nothing stored
                    result[index] = _keep_known(row, lookup)
                    continue
                result[index] = self._store(keys[index], entries[index].title, lookup, row, now)
        return DigestLinks(digest.date, _complete(result), requests, out_of_time, _titles(digest))

    def known(self, digests: Sequence[Digest]) -> list[DigestLinks]:
        """What the overrides and the cache know of each digest, asking arXiv
        nothing: links_for(offline=True) for many digests with one cache read
        (in chunks). A paper never looked up fails with 'not looked up yet'
        and is due at once."""
        now = self.now()
        plans = [self._plan(digest) for digest in digests]
        cached = self._read(key for _, keys in plans for key in keys.values())
        out = []
        for digest, (result, keys) in zip(digests, plans, strict=True):
            for index, key in keys.items():
                row = cached.get(key)
                result[index] = row.lookup if row is not None else Lookup.failed(NOT_YET, now)
            out.append(DigestLinks(digest.date, _complete(result), titles=_titles(digest)))
        return out

    def _plan(self, digest: Digest) -> tuple[list[Lookup | None], dict[int, str]]:
        """The lookups the overrides (or papers.lookup off) decide, and the cache
        key of each other entry, by index."""
        from newsletter.papers.matching import paper_key

        result: list[Lookup | None] = [None] * len(digest.entries)
        keys: dict[int, str] = {}
        for index, entry in enumerate(digest.entries):
            override = self.overrides.find(digest.date, index + 1, entry.title)
            if override is not None:
                result[index] = override.lookup()
            elif self.papers.lookup == "off":
                result[index] = Lookup.not_found("paper lookups are off (papers.lookup)", "off")
            else:
                keys[index] = paper_key(entry.title, entry.authors)
        return result, keys

    def _ask(
        self, papers: list[tuple[str, tuple[str, ...]]], budget: float
    ) -> tuple[list[Lookup], int, int, bool]:
        """(lookups, how many reached arXiv, HTTP requests, budget ran out);
        never raises."""
        try:
            if self._client is None:
                if self._factory is None:
                    raise RuntimeError("no arXiv client configured")
                self._client = self._factory()
            before = self._client.requests_sent
            batch = self._client.lookup_all(papers, budget=budget)
            sent = self._client.requests_sent - before
            return list(batch.lookups), batch.tried, sent, batch.out_of_time
        except Exception as exc:  # a bug or an odd library error must not stop publishing
            log.exception("paper lookup failed unexpectedly")
            error = Lookup.failed(f"lookup failed: {exc}", self.now() + backoff(1))
            return [error] * len(papers), 0, 0, False

    def _read(self, keys: Iterable[str]) -> dict[str, CachedLink]:
        if self.cache is None:
            return {}
        import sqlalchemy as sa

        try:
            return self.cache.get_many(keys)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("cannot read the link cache, looking papers up again: %s", exc)
            return {}

    def _store(
        self, key: str, title: str, lookup: Lookup, row: CachedLink | None, now: dt.datetime
    ) -> Lookup:
        """Cache a lookup that reached arXiv; the Lookup to show."""
        if lookup.status is LinkStatus.FAILED:
            if row is not None and row.lookup.status is not LinkStatus.FAILED:
                log.warning(
                    "refreshing %r failed (%s); keeping the cached link", title, lookup.reason
                )
                return row.lookup
            attempts = (row.attempts if row is not None else 0) + 1
            later = now + backoff(attempts)
            if lookup.retry_after is None or lookup.retry_after < later:
                lookup = replace(lookup, retry_after=later)
        if self.cache is not None:
            import sqlalchemy as sa

            try:
                self.cache.put(key, title, lookup, now)
            except sa.exc.SQLAlchemyError as exc:
                log.warning("cannot store the link of %r: %s", title, exc)
        return lookup


def _still_valid(row: CachedLink, now: dt.datetime) -> bool:
    """A final answer, or a failure whose retry time has not come."""
    retry = row.lookup.retry_after
    return row.lookup.status is not LinkStatus.FAILED or (retry is not None and retry > now)


def _titles(digest: Digest) -> tuple[str, ...]:
    return tuple(entry.title for entry in digest.entries)


def _complete(result: list[Lookup | None]) -> tuple[Lookup, ...]:
    done = tuple(lookup for lookup in result if lookup is not None)
    assert len(done) == len(result)
    return done


def _keep_known(row: CachedLink | None, lookup: Lookup) -> Lookup:
    """For a paper not tried this time: what the cache knew, if it was final."""
    if row is not None and row.lookup.status is not LinkStatus.FAILED:
        return row.lookup
    return lookup
