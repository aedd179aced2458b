"""Find a paper on arXiv by its title, politely and within a time budget.

Uses the `arxiv` package (https://pypi.org/project/arxiv/) for the query and
its Atom parsing, over one `requests` connection that this module controls:

- at most one request every `min_interval` seconds (3 s, as the arXiv API
  terms of use ask: https://info.arxiv.org/help/api/tou.html; never less
  against arxiv.org), counted from the end of the previous answer;
- a descriptive User-Agent;
- a timeout per request, and a deadline for a whole batch: no request starts,
  and no answer is waited for, past it;
- no retries inside a batch: a failure is reported with when to try again.

`ArxivClient.lookup_all` never raises for network or server trouble: each
paper gets a `Lookup` (found, not_found with the reason, or failed with the
error and a retry time).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import arxiv
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from newsletter.papers.links import (
    ARXIV_API_URL,
    Lookup,
    PaperLink,
    is_public_arxiv,
    parse_arxiv_id,
    utcnow,
)
from newsletter.papers.matching import Candidate, choose, title_query

log = logging.getLogger("newsletter.links")

MIN_INTERVAL = 3.0  # seconds between requests to arxiv.org, by its terms of use
DEFAULT_RETRY = 300.0  # seconds before trying again after a failure without Retry-After
MAX_RETRY = 24 * 3600.0
MAX_BYTES = 4_000_000  # an answer of 10 entries is ~30 KB
_ATOM = b"http://www.w3.org/2005/Atom"


def default_user_agent(contact: str = "") -> str:
    """'newsletter/VERSION (CONTACT) arxiv.py/VERSION': who asks, and how to reach them."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("newsletter")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        ours = "0"
    detail = f" ({contact})" if contact else ""
    return f"newsletter/{ours}{detail} arxiv.py/{arxiv.__version__}"


class BudgetSpent(Exception):
    """The batch's deadline passed (or would, waiting for the next request slot)."""


class Unavailable(Exception):
    """arXiv answered with something other than a feed: an HTTP error or a foreign page."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None, now: dt.datetime) -> float | None:
    """An HTTP Retry-After value (RFC 9110 §10.2.3: seconds or an HTTP-date) in seconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


class _Transport(HTTPAdapter):
    """One pooled connection, the rate limit, the User-Agent and the deadline."""

    def __init__(self, client: ArxivClient) -> None:
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0, pool_block=True)
        self.client = client
        self.last_end: float | None = None
        self.deadline = float("inf")
        self.requests = 0
        self.last_timeout = client.timeout

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        client = self.client
        clock = client.clock
        if self.last_end is not None:
            wait = self.last_end + client.min_interval - clock()
            if wait > 0:
                if clock() + wait >= self.deadline:
                    raise BudgetSpent
                client.sleep(wait)
        remaining = self.deadline - clock()
        if remaining <= 0.05:
            raise BudgetSpent
        timeout = self.last_timeout = min(client.timeout, remaining)
        request.headers["User-Agent"] = client.user_agent
        kwargs.update(stream=True, timeout=(timeout, timeout))
        self.requests += 1
        try:
            response = super().send(request, **kwargs)
            body = self._read(response)
        finally:
            self.last_end = clock()
        if response.status_code != 200:
            raise Unavailable(
                f"arXiv answered HTTP {response.status_code} {response.reason or ''}".rstrip(),
                _retry_after_seconds(response.headers.get("Retry-After"), client.now()),
            )
        if _ATOM not in body[:4096]:
            raise Unavailable("arXiv's answer was not an Atom feed")
        # requests' own way to hold a body already read (Response.content reads it so).
        response._content = body
        response._content_consumed = True
        return response

    def _read(self, response: requests.Response) -> bytes:
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(65536):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BYTES:
                    raise Unavailable(f"arXiv's answer was larger than {MAX_BYTES} bytes")
                if self.client.clock() >= self.deadline:
                    raise requests.Timeout("the answer was still arriving at the deadline")
        except requests.exceptions.ConnectionError as exc:
            # requests wraps a read timeout in the body as a ConnectionError.
            if exc.args and isinstance(exc.args[0], ReadTimeoutError):
                raise requests.Timeout(str(exc)) from exc
            raise
        finally:
            response.close()
        return b"".join(chunks)


@dataclass(frozen=True)
class Batch:
    """The lookups of a batch, in order; only the first `tried` reached arXiv.
    `out_of_time`: the budget ran out before every paper was tried."""

    lookups: tuple[Lookup, ...]
    tried: int
    out_of_time: bool = False


class ArxivClient:
    """Title look-ups on the arXiv API; one connection, one request at a time.

    api_url: the query endpoint (default the public one). timeout: seconds for
    connecting and for each read. min_interval: seconds between requests,
    raised to 3 s for arxiv.org. clock/sleep/now: injectable for tests
    (monotonic seconds, sleep in seconds, aware UTC datetime). Not thread-safe.
    """

    def __init__(
        self,
        *,
        api_url: str = ARXIV_API_URL,
        timeout: float = 10.0,
        user_agent: str | None = None,
        min_interval: float = MIN_INTERVAL,
        max_results: int = 10,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        if is_public_arxiv(api_url):
            min_interval = max(min_interval, MIN_INTERVAL)
        self.api_url = api_url
        self.timeout = timeout
        self.user_agent = user_agent or default_user_agent()
        self.min_interval = min_interval
        self.max_results = max_results
        self.clock, self.sleep, self.now = clock, sleep, now
        # The package paces and retries by itself; we do both here, with a deadline.
        self._client = arxiv.Client(page_size=max_results, delay_seconds=0, num_retries=0)
        self._client.query_url_format = api_url + "?{}"
        self._transport = _Transport(self)
        session = requests.Session()
        session.mount("http://", self._transport)
        session.mount("https://", self._transport)
        self._client._session = session  # the package's one HTTP session, now ours

    @property
    def requests_sent(self) -> int:
        """How many HTTP requests this client has started."""
        return self._transport.requests

    def close(self) -> None:
        self._client._session.close()

    def __enter__(self) -> ArxivClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def search(self, title: str) -> list[Candidate]:
        """arXiv entries whose titles contain `title`'s words, best first.

        Raises BudgetSpent, Unavailable, or requests' exceptions.
        """
        query = arxiv.Search(query=title_query(title), max_results=self.max_results)
        found = []
        for result in self._client.results(query):
            ident = parse_arxiv_id(result.get_short_id())
            if ident is None:
                log.warning("ignoring an arXiv result without a usable id: %s", result.entry_id)
                continue
            found.append(
                Candidate(
                    arxiv_id=ident,
                    title=result.title,
                    authors=tuple(author.name for author in result.authors),
                    category=result.primary_category,
                    published=result.published.isoformat(),
                )
            )
        return found

    def lookup(self, title: str, authors: Sequence[str]) -> Lookup:
        """The paper's link, or why not; raises like `search` on trouble."""
        verdict = choose(title, authors, self.search(title))
        if verdict.candidate is None:
            return Lookup.not_found(verdict.reason)
        found = verdict.candidate
        return Lookup.found(PaperLink.for_arxiv(found.arxiv_id, found.category))

    def lookup_all(self, papers: Sequence[tuple[str, Sequence[str]]], *, budget: float) -> Batch:
        """One Lookup per (title, authors), in order, within `budget` seconds.

        Never raises for network, server or budget trouble. After a failure
        that says arXiv is unwell (timeout, refused connection, HTTP error),
        or when the budget runs out, the remaining papers are not tried: they
        fail with the same retry time, and `Batch.tried` says how many were.
        """
        self._transport.deadline = self.clock() + budget
        results: list[Lookup] = []
        for title, authors in papers:
            out_of_time = False
            try:
                results.append(self.lookup(title, authors))
                continue
            except BudgetSpent:
                rest = Lookup.failed(
                    f"not looked up: the {budget:g} s for this digest's lookups ran out",
                    self.now(),
                )
                return Batch((*results, *[rest] * (len(papers) - len(results))), len(results), True)
            except Unavailable as exc:
                failure = self._failed(str(exc), exc.retry_after)
            except requests.Timeout:
                waited = self._transport.last_timeout
                out_of_time = waited < self.timeout
                cut = " (what was left of this digest's budget)" if out_of_time else ""
                failure = self._failed(f"arXiv did not answer within {waited:.3g} s{cut}")
            except requests.ConnectionError as exc:
                failure = self._failed(f"cannot reach {self.api_url}: {_root_cause(exc)}")
            except (requests.RequestException, arxiv.ArxivError) as exc:
                failure = self._failed(f"arXiv lookup failed: {exc}")
            log.warning("arXiv lookup of %r failed: %s", title, failure.reason)
            results.append(failure)
            rest = Lookup.failed(
                f"not looked up: arXiv failed on an earlier paper ({failure.reason})",
                failure.retry_after or self.now(),
            )
            return Batch(
                (*results, *[rest] * (len(papers) - len(results))), len(results), out_of_time
            )
        return Batch(tuple(results), len(results))

    def _failed(self, error: str, retry_after: float | None = None) -> Lookup:
        seconds = min(MAX_RETRY, DEFAULT_RETRY if retry_after is None else retry_after)
        return Lookup.failed(error, self.now() + dt.timedelta(seconds=seconds))


def _root_cause(exc: BaseException) -> str:
    """The innermost error's message ('[Errno 111] Connection refused'), without
    urllib3's wrapping (which names object addresses, different every run)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc).rsplit(">: ", 1)[-1]
