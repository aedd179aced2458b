"""Paper links end to end: the arXiv client against a local server that answers
like the arXiv API (tests/arxiv_server.py), the lookup policy, and the link
cache on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import itertools
import logging

import pytest
from arxiv_server import DECOYS, ArxivServer, FakeTime
from helpers import SAMPLE_DIGESTS

from newsletter.config import PapersConfig, config_from_dict
from newsletter.digest import read_digest
from newsletter.papers.arxiv import MIN_INTERVAL, ArxivClient
from newsletter.papers.linking import Linker, backoff, make_client
from newsletter.papers.links import LinkStatus, Lookup, PaperLink
from newsletter.papers.matching import paper_key
from newsletter.papers.overrides import parse_overrides
from newsletter.store.database import Database
from newsletter.store.links import LinkCache

# The example digests' papers and the ids the hand-written entries give them.
EXPECTED = {
    "2025-01-22": ["2501.11651", "2501.12370", "2501.11747", "2501.11873"],
    "2025-04-04": ["2504.02807", "2504.02263", "2504.02495", "2504.02827"],
    "2025-05-19": [
        "2505.11432",
        "2505.11409",
        "2505.11080",
        "2505.11441",
        "2505.10978",
        "2505.11227",
    ],
}


@pytest.fixture(scope="module")
def digests():
    found = [read_digest(path).digest for path in sorted(SAMPLE_DIGESTS.glob("*.txt"))]
    return {d.date.isoformat(): d for d in found}


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def server(fake_time, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    served = ArxivServer(fake_time)
    yield served
    served.close()


def linker(server, fake_time, *, cache=None, overrides=None, timeout=5.0, interval=3.0, **papers):
    """A Linker on the fake server whose rate limit sleeps on the fake clock."""
    config = PapersConfig(arxiv_api_url=server.url, timeout=timeout, **papers)

    def client():
        return ArxivClient(
            api_url=server.url,
            timeout=timeout,
            min_interval=interval,
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            now=fake_time.now,
        )

    return Linker(
        config, cache=cache, overrides=overrides, client_factory=client, now=fake_time.now
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def cache(request, tmp_path):
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'links.db'}")
    else:
        db = Database(request.getfixturevalue("mail_pg_url"))
    links = LinkCache(db)
    with db.engine.begin() as conn:  # one PostgreSQL server per module: start clean
        conn.execute(links.table.delete())
    yield links
    db.close()


def ids(result):
    return [lk.link.arxiv_id if lk.link else None for lk in result.lookups]


def test_every_example_paper_is_found_politely(server, fake_time, digests):
    with linker(server, fake_time) as finder:
        results = {date: finder.links_for(d) for date, d in digests.items()}
    for date, result in results.items():
        assert ids(result) == EXPECTED[date], date
        assert all(lk.source == "arxiv" and not lk.reason for lk in result.lookups)
    # Titles that arXiv writes otherwise still match: \textsc{} and other case,
    # a wrapped line, a curly apostrophe, an author without diacritic or nickname.
    bleuberi = results["2025-05-19"].lookups[2].link
    assert bleuberi == PaperLink("https://arxiv.org/abs/2505.11080", "2505.11080", "cs.CL")
    assert bleuberi.pdf_url == "https://arxiv.org/pdf/2505.11080"
    assert bleuberi.hf_url == "https://huggingface.co/papers/2505.11080"
    assert results["2025-04-04"].lookups[1].link.category == "cs.DC"
    seen = server.seen
    assert len(seen) == sum(len(v) for v in EXPECTED.values()) == 14
    assert sum(r.requests for r in results.values()) == 14
    # One connection, one request at a time, at least 3 s apart, a descriptive User-Agent.
    assert len({s.client for s in seen}) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert min(gaps) >= MIN_INTERVAL
    assert all(0 < wait <= MIN_INTERVAL for wait in fake_time.sleeps)
    assert all(s.user_agent.startswith("newsletter/") and "arxiv.py/" in s.user_agent for s in seen)
    assert seen[0].query["search_query"] == (
        'ti:"advancing language model reasoning through reinforcement learning and inference scaling"'
    )
    assert seen[0].query["max_results"] == "10"


def test_title_in_other_case_and_punctuation(server, fake_time, digests, tmp_path):
    entry = DECOYS["2503.00002"].parent.parent / "2504.02807.xml"
    text = entry.read_text(encoding="utf-8").replace(
        "<title>MegaMath: Pushing the Limits of Open Math Corpora</title>",
        "<title>MEGAMATH -- pushing the limits of open-math corpora.</title>",
    )
    assert "MEGAMATH" in text
    (tmp_path / "2504.02807.xml").write_text(text, encoding="utf-8")
    server.add(tmp_path / "2504.02807.xml")
    with linker(server, fake_time) as finder:
        result = finder.links_for(digests["2025-04-04"])
    assert ids(result)[0] == "2504.02807"


def test_same_title_by_other_authors_is_no_link(server, fake_time, digests):
    server.remove("2501.11747")
    server.add(DECOYS["2502.00001"])
    with linker(server, fake_time) as finder:
        result = finder.links_for(digests["2025-01-22"])
    assert ids(result) == ["2501.11651", "2501.12370", None, "2501.11873"]
    assert result.lookups[2] == Lookup.not_found(
        "arXiv 2502.00001 has this title but none of our authors (Alice Example, Bob Sample)"
    )
    # With the right paper listed too, the right one is chosen.
    server.add(DECOYS["2502.00001"].parent.parent / "2501.11747.xml")
    with linker(server, fake_time) as finder:
        assert ids(finder.links_for(digests["2025-01-22"]))[2] == "2501.11747"


def test_near_miss_and_no_result_are_no_link(server, fake_time, digests):
    server.remove("2504.02495")
    server.add(DECOYS["2503.00002"])  # the title with one more word
    server.remove("2504.02827")
    with linker(server, fake_time) as finder:
        result = finder.links_for(digests["2025-04-04"])
    assert ids(result) == ["2504.02807", "2504.02263", None, None]
    near, missing = result.lookups[2], result.lookups[3]
    assert near.status is LinkStatus.NOT_FOUND
    assert near.reason == (
        "no arXiv title matches exactly; the nearest is 2503.00002 "
        "“Inference-Time Scaling for Generalist Reward Modeling Revisited”"
    )
    assert missing == Lookup.not_found("arXiv has no paper with this title")


def test_503_then_success_is_retried_later(server, fake_time, digests, cache):
    server.then(("status", 503, {"Retry-After": "120"}))
    digest = digests["2025-04-04"]
    first = paper_key(digest.entries[0].title, digest.entries[0].authors)
    with linker(server, fake_time, cache=cache) as finder:
        start = fake_time.now()
        result = finder.links_for(digest)
        assert [lk.status for lk in result.lookups] == [LinkStatus.FAILED] * 4
        assert result.lookups[0].reason == "arXiv answered HTTP 503 Service Unavailable"
        # The rest were not tried: arXiv is unwell, so the batch stops.
        assert result.lookups[1].reason.startswith("not looked up: arXiv failed on an earlier")
        assert len(server.seen) == 1
        # Retry-After (120 s) is shorter than the first backoff (5 min): 5 min it is.
        row = cache.get(first)
        assert row.attempts == 1 and row.lookup.status is LinkStatus.FAILED
        assert row.lookup.retry_after - start >= backoff(1)
        assert cache.next_retry() == row.lookup.retry_after
        assert len(cache.get_many(paper_key(e.title, e.authors) for e in digest.entries)) == 1

        # Before the retry time: the failed paper waits; the others are looked up.
        again = finder.links_for(digest)
        assert ids(again) == [None, "2504.02263", "2504.02495", "2504.02827"]
        assert again.lookups[0].source == "cache" and len(server.seen) == 4

        fake_time.advance(backoff(1).total_seconds() + 1)
        later = finder.links_for(digest)
        assert ids(later) == EXPECTED["2025-04-04"]
        assert len(server.seen) == 5
        assert cache.get(first).attempts == 0 and cache.next_retry() is None
        # Everything is known now: no more requests.
        assert ids(finder.links_for(digest)) == EXPECTED["2025-04-04"]
        assert len(server.seen) == 5
    assert cache.counts() == {LinkStatus.FOUND: 4, LinkStatus.NOT_FOUND: 0, LinkStatus.FAILED: 0}


def test_failures_back_off_and_honour_a_longer_retry_after(server, fake_time, digests, cache):
    digest = digests["2025-01-22"]
    key = paper_key(digest.entries[0].title, digest.entries[0].authors)
    with linker(server, fake_time, cache=cache) as finder:
        retry_at = []
        for _ in range(3):
            server.then(("status", 502, {}))
            now = fake_time.now()
            finder.links_for(digest)
            row = cache.get(key)
            retry_at.append(row.lookup.retry_after - now)
            fake_time.advance((row.lookup.retry_after - now).total_seconds() + 1)
        assert row.attempts == 3
        assert [round(r.total_seconds()) for r in retry_at] == [300, 600, 1200]
        server.then(("status", 429, {"Retry-After": "7200"}))
        now = fake_time.now()
        finder.links_for(digest)
        assert cache.get(key).lookup.retry_after - now == dt.timedelta(hours=2)


# A hang long enough that only a lookup that waits for it would see the answer.
HANG = ("hang", 20)


def test_a_hung_server_costs_one_timeout(server, fake_time, digests):
    server.then(HANG)
    with linker(server, fake_time, timeout=0.5) as finder:
        start = fake_time.clock()
        result = finder.links_for(digests["2025-05-19"])
        spent = fake_time.clock() - start
    # Released only now: had the lookup waited for the answer, it would have found it.
    server.behaviour.release.set()
    assert result.lookups[0].status is LinkStatus.FAILED, result.lookups[0]
    assert result.lookups[0].reason == "arXiv did not answer within 0.5 s"
    assert all(lk.status is LinkStatus.FAILED for lk in result.lookups[1:])
    assert len(server.seen) == 1
    assert spent < HANG[1]  # bounded by the timeout, not by the server


def test_the_budget_bounds_a_digest(server, fake_time, digests):
    # A budget shorter than the timeout cuts the one slow request short ...
    server.then(HANG)
    with linker(server, fake_time, timeout=30, budget_seconds=0.5) as finder:
        result = finder.links_for(digests["2025-04-04"])
    server.behaviour.release.set()
    assert [lk.status for lk in result.lookups] == [LinkStatus.FAILED] * 4, result.lookups[0]
    reason = result.lookups[0].reason
    assert reason.startswith("arXiv did not answer within 0.")
    assert reason.endswith(" s (what was left of this digest's budget)")
    # ... and the rate limit never sleeps past it: 2 requests 100 s apart fit
    # in 150 s, a third does not (50 s of real time to spare for a slow machine).
    fake_time.sleeps.clear()
    seen_before = len(server.seen)
    with linker(server, fake_time, interval=100, budget_seconds=150) as finder:
        result = finder.links_for(digests["2025-04-04"])
        assert ids(result) == ["2504.02807", "2504.02263", None, None]
        assert result.lookups[2].reason == (
            "not looked up: the 150 s for this digest's lookups ran out"
        )
        assert result.requests == 2 and len(server.seen) == seen_before + 2
        assert fake_time.sleeps and sum(fake_time.sleeps) < 150


def test_the_budget_carries_over_through_the_cache(server, fake_time, digests, cache):
    digest = digests["2025-04-04"]
    keys = [paper_key(e.title, e.authors) for e in digest.entries]
    with linker(server, fake_time, cache=cache, interval=100, budget_seconds=150) as finder:
        first = finder.links_for(digest)
        assert ids(first) == ["2504.02807", "2504.02263", None, None]
        # Papers that were never tried are not cached as failures.
        assert set(cache.get_many(keys)) == set(keys[:2])
        # The next run has a new budget, of which the 100 s wait for the next
        # request slot is part: one more paper, and nothing asked twice.
        second = finder.links_for(digest)
        assert ids(second) == ["2504.02807", "2504.02263", "2504.02495", None]
        assert [lk.source for lk in second.lookups[:3]] == ["cache", "cache", "arxiv"]
        assert second.requests == 1
        third = finder.links_for(digest)
        assert ids(third) == EXPECTED["2025-04-04"] and third.requests == 1
    assert len(server.seen) == 4


def test_offline_gives_what_is_known_and_asks_nothing(server, fake_time, digests, cache):
    digest = digests["2025-04-04"]
    keys = [paper_key(e.title, e.authors) for e in digest.entries]
    with linker(server, fake_time, cache=cache) as finder:
        server.then(("status", 200, {}))  # not a feed: paper 1 fails, the rest wait
        finder.links_for(digest)
        fake_time.advance(backoff(1).total_seconds() + 1)  # paper 1 is due again
        seen = len(server.seen)
        offline = finder.links_for(digest, offline=True)
        assert [lk.status for lk in offline.lookups] == [LinkStatus.FAILED] * 4
        assert offline.lookups[0].reason == "arXiv's answer was not an Atom feed"
        assert offline.lookups[0].source == "cache"
        assert [lk.reason for lk in offline.lookups[1:]] == ["not looked up yet"] * 3
        assert offline.requests == 0 and len(server.seen) == seen
        assert set(cache.get_many(keys)) == {keys[0]}
        server.remove("2504.02827")
        known = finder.links_for(digest)
        assert ids(known) == ["2504.02807", "2504.02263", "2504.02495", None]
        seen, before = len(server.seen), cache.get_many(keys)
        offline = finder.links_for(digest, offline=True)
        assert ids(offline) == ids(known) and {lk.source for lk in offline.lookups} == {"cache"}
        assert len(server.seen) == seen and cache.get_many(keys) == before


def test_a_page_that_is_not_a_feed_is_a_failure_not_an_absence(server, fake_time, digests):
    server.then(("status", 200, {"Content-Type": "text/html"}))
    with linker(server, fake_time) as finder:
        result = finder.links_for(digests["2025-04-04"])
    assert result.lookups[0].status is LinkStatus.FAILED
    assert result.lookups[0].reason == "arXiv's answer was not an Atom feed"


def test_an_unreachable_server_is_a_failure(fake_time, digests, tmp_path, caplog):
    from smtp_servers import free_port

    url = f"http://127.0.0.1:{free_port()}/api/query"
    config = PapersConfig(arxiv_api_url=url, timeout=2)
    finder = Linker(
        config,
        client_factory=lambda: ArxivClient(api_url=url, timeout=2, now=fake_time.now),
        now=fake_time.now,
    )
    start = fake_time.now()
    with caplog.at_level(logging.WARNING, logger="newsletter.links"):
        result = finder.links_for(digests["2025-04-04"])
    reason = result.lookups[0].reason
    assert reason.startswith(f"cannot reach {url}: ") and "refused" in reason, reason
    assert dt.timedelta(minutes=5) <= result.next_retry - start < dt.timedelta(minutes=6)
    assert "arXiv lookup of 'MegaMath" in caplog.text


def test_refresh_looks_up_again_but_a_failed_refresh_keeps_the_link(
    server, fake_time, digests, cache
):
    digest = digests["2025-01-22"]
    with linker(server, fake_time, cache=cache) as finder:
        assert ids(finder.links_for(digest)) == EXPECTED["2025-01-22"]
        server.then(("status", 503, {}))
        kept = finder.links_for(digest, refresh=True)
        assert ids(kept) == EXPECTED["2025-01-22"]
        assert [lk.source for lk in kept.lookups] == ["cache"] * 4
        assert cache.counts()[LinkStatus.FOUND] == 4
        # arXiv now lists another paper under that title: the refresh drops the link.
        server.remove("2501.11747")
        server.add(DECOYS["2502.00001"])
        fresh = finder.links_for(digest, refresh=True)
        assert ids(fresh) == ["2501.11651", "2501.12370", None, "2501.11873"]
        assert cache.counts()[LinkStatus.NOT_FOUND] == 1
        assert len(server.seen) == 4 + 1 + 4


def test_overrides_win_and_off_asks_nothing(server, fake_time, digests, cache):
    overrides = parse_overrides(
        "titles:\n"
        '  "MegaMath: Pushing the Limits of Open Math Corpora": https://example.org/megamath\n'
        "dates:\n"
        "  2025-04-04:\n"
        "    2: none\n",
        "links.yaml",
    )
    digest = digests["2025-04-04"]
    with linker(server, fake_time, cache=cache, overrides=overrides) as finder:
        result = finder.links_for(digest)
    assert result.lookups[0] == Lookup.found(PaperLink("https://example.org/megamath"), "override")
    assert result.lookups[1] == Lookup.not_found(
        "no link, as the override file says (links.yaml:5)", "override"
    )
    assert ids(result)[2:] == ["2504.02495", "2504.02827"]
    assert len(server.seen) == 2  # overridden papers are not looked up
    with linker(server, fake_time, cache=cache, overrides=overrides, lookup="off") as finder:
        off = finder.links_for(digest)
    assert [lk.source for lk in off.lookups] == ["override", "override", "off", "off"]
    assert off.links[2:] == (None, None)
    assert len(server.seen) == 2


def test_never_raises_into_publishing(server, fake_time, digests, tmp_path, caplog):
    def broken():
        raise RuntimeError("boom")

    finder = Linker(PapersConfig(), client_factory=broken, now=fake_time.now)
    with caplog.at_level(logging.WARNING, logger="newsletter.links"):
        result = finder.links_for(digests["2025-04-04"])
    assert [lk.reason for lk in result.lookups] == ["lookup failed: boom"] * 4
    assert "Traceback" in caplog.text  # logged with its traceback for the developer
    # A database that cannot be used: the lookups still run, a warning says why.
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    with db.engine.begin() as conn:  # damaged since it was opened
        conn.exec_driver_sql("DROP TABLE paper_links")
    with caplog.at_level(logging.WARNING, logger="newsletter.links"):
        result = linker(server, fake_time, cache=LinkCache(db)).links_for(digests["2025-04-04"])
    db.close()
    assert ids(result) == EXPECTED["2025-04-04"]
    assert "cannot read the link cache" in caplog.text
    assert "cannot store the link" in caplog.text


def test_the_public_api_is_never_asked_faster_than_every_3_seconds():
    fast = ArxivClient(api_url="https://export.arxiv.org/api/query", min_interval=0.1)
    assert fast.min_interval == MIN_INTERVAL == 3.0
    assert ArxivClient(api_url="http://arxiv.org/api/query", min_interval=1).min_interval == 3.0
    assert ArxivClient().min_interval == 3.0
    assert ArxivClient(api_url="http://127.0.0.1:1/q", min_interval=0.1).min_interval == 0.1
    assert ArxivClient(api_url="https://notarxiv.org/q", min_interval=0.1).min_interval == 0.1


def test_configured_client_names_the_site_and_sender(server, fake_time, tmp_path, digests):
    config = config_from_dict(
        {
            "site": {"base_url": "https://example.org/papers/"},
            "email": {"from": "ML Papers <papers@example.org>"},
            "papers": {"arxiv_api_url": server.url, "timeout": 3},
        },
        base=tmp_path,
    )
    with make_client(config) as client:
        assert client.timeout == 3 and client.min_interval == 3.0
        batch = client.lookup_all(
            [(digests["2025-04-04"].entries[0].title, ("Fan Zhou",))], budget=10
        )
    assert batch.tried == 1 and batch.lookups[0].link.arxiv_id == "2504.02807"
    agent = server.seen[0].user_agent
    assert "(+https://example.org/papers/; mailto:papers@example.org)" in agent


def test_cache_rows(cache):
    now = dt.datetime(2025, 5, 19, 9, 0, tzinfo=dt.UTC)
    key = paper_key("MegaMath: Pushing the Limits", ["Fan Zhou", "Eric P. Xing"])
    # The key ignores what matching ignores: case, punctuation, author order and form.
    assert key == paper_key("megamath -- pushing the limits", ["Xing, Eric", "F. Zhou"])
    assert key != paper_key("MegaMath: Pushing the Limits", ["Someone Else"])
    assert len(key) == 64
    failed = Lookup.failed("arXiv answered HTTP 503", now + dt.timedelta(minutes=5))
    cache.put(key, "MegaMath", failed, now)
    cache.put(key, "MegaMath", failed, now)
    row = cache.get(key)
    assert (row.attempts, row.lookup.reason, row.lookup.source) == (2, failed.reason, "cache")
    assert row.lookup.retry_after == now + dt.timedelta(minutes=5)
    assert row.checked_at == now
    found = Lookup.found(PaperLink.for_arxiv("2504.02807", "cs.CL"))
    cache.put(key, "MegaMath", found, now)
    row = cache.get(key)
    assert row.attempts == 0 and row.lookup == Lookup.found(found.link, "cache")
    assert cache.next_retry() is None
    other = paper_key("Other", ["A B"])
    cache.put(other, "Other", Lookup.not_found("arXiv has no paper with this title"), now)
    assert cache.counts() == {LinkStatus.FOUND: 1, LinkStatus.NOT_FOUND: 1, LinkStatus.FAILED: 0}
    assert set(cache.get_many([key, other, "missing"])) == {key, other}
    with pytest.raises(ValueError):
        cache.put(key, "MegaMath", Lookup.not_found("override says none", "override"), now)
    # A second writer inserting the same paper meanwhile updates instead of failing.
    with cache.engine.begin() as conn:
        conn.execute(
            cache._insert_or_update(
                other,
                {
                    "title": "Again",
                    "status": "not_found",
                    "url": None,
                    "arxiv_id": None,
                    "category": None,
                    "reason": "again",
                    "attempts": 0,
                    "checked_at": now,
                    "retry_after": None,
                },
            )
        )
    assert cache.get(other).lookup.reason == "again"
