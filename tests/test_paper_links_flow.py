"""Paper links through the real commands: `publish`, `build`, `links`, `status`
and the daemon, against the fake arXiv API (tests/arxiv_server.py).

Each project here opts in to lookups by pointing papers.arxiv_api_url at the
fake server; every other test's project has papers.lookup off, and the safety
net of tests/netguard refuses the real arXiv to them all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from arxiv_server import DECOYS, ArxivServer, FakeTime
from helpers import SAMPLE_DIGESTS, email_bodies, numbered_links, run_cli

from newsletter.digest import format_digest, read_digest
from newsletter.papers.matching import title_query

SEOUL = ZoneInfo("Asia/Seoul")
ARXIV_DATA = SAMPLE_DIGESTS.parent / "arxiv"
IDS_0404 = ["2504.02807", "2504.02263", "2504.02495", "2504.02827"]


@pytest.fixture
def server():
    served = ArxivServer(FakeTime())
    yield served
    served.close()


def make_project(
    folder: Path,
    server: ArxivServer,
    digests: dict[str, str],
    *,
    papers: str = "",
    subscribers: int = 1,
) -> Path:
    """A project whose lookups go to `server`; `digests` maps file names to text."""
    (folder / "digests").mkdir(parents=True)
    for name, text in digests.items():
        (folder / "digests" / name).write_text(text, encoding="utf-8")
    (folder / "config.yaml").write_text(
        "site:\n  base_url: https://example.org/papers/\n  timezone: Asia/Seoul\n"
        "paths:\n  digests: digests\n  public: public\n  state: state\n  outbox: outbox\n"
        "schedule:\n  settle_seconds: 0\n  send_time: '00:00'\n"
        f"papers:\n  arxiv_api_url: {server.url}\n  interval_seconds: 0\n  timeout: 5\n"
        + "".join(f"  {line}\n" for line in papers.splitlines()),
        encoding="utf-8",
    )
    for number in range(subscribers):
        added = run_cli(
            "subscribers", "add", f"reader{number}@example.org", "--edition", "both", cwd=folder
        )
        assert added.returncode == 0, added.stderr
    return folder


def sample(name: str, date: dt.date | None = None, **titles: str) -> str:
    """A sample digest's text, its date and titles (by position, 'p1'...) changed."""
    digest = read_digest(SAMPLE_DIGESTS / name).digest
    entries = list(digest.entries)
    for key, title in titles.items():
        index = int(key[1:]) - 1
        entries[index] = dataclasses.replace(entries[index], title=title)
    return format_digest(
        dataclasses.replace(digest, date=date or digest.date, entries=tuple(entries))
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def page(project: Path, edition: str, date: str) -> str:
    return (project / "public" / edition / date / "index.html").read_text(encoding="utf-8")


def emails(project: Path, date: str) -> list[Path]:
    return sorted((project / "outbox" / date).glob("*.eml"))


def mail(path: Path) -> tuple[str, str]:
    return email_bodies(path.read_bytes())


def status(project: Path) -> dict:
    return json.loads(ok(run_cli("status", "--json", cwd=project)).stdout)


# --- publish ----------------------------------------------------------------------------


def test_publish_links_every_output_and_the_cache_answers_the_next_run(tmp_path, server):
    project = make_project(tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    done = ok(run_cli("publish", "--date", "2025-04-04", "--force", "-v", cwd=project))
    assert "links 2025-04-04: 4 found, 0 not found, 0 failed (4 requests)" in done.stdout
    assert "1. MegaMath: Pushing the Limits of Open Math Corpora: arXiv:2504.02807 (cs.CL)" in (
        done.stdout
    )
    assert len(server.seen) == 4
    assert "(+https://example.org/papers/; mailto:papers@example.org)" in server.seen[0].user_agent
    for edition in ("ko", "en", "both"):
        html = page(project, edition, "2025-04-04")
        for ident in IDS_0404:
            assert f'href="https://arxiv.org/abs/{ident}"' in html
            assert f'href="https://arxiv.org/pdf/{ident}"' in html
            assert f'href="https://huggingface.co/papers/{ident}"' in html
            assert f">arXiv:{ident}</a>" in html
        assert 'class="self" href="#megamath-pushing-the-limits-of-open-math-corpora-4df9f0b0"' in (
            html
        )
    assert "수학 및 코드 데이터 371B" in page(project, "ko", "2025-04-04")  # Hangul intact
    # The email: the title links to arXiv, the links line, the text part's list.
    (sent,) = emails(project, "2025-04-04")
    text, html = mail(sent)
    assert '<a href="https://arxiv.org/abs/2504.02807"' in html
    assert "arXiv:2504.02263 (cs.DC) [" in " ".join(text.split())
    listed = numbered_links(text).values()
    assert {f"https://arxiv.org/pdf/{i}" for i in IDS_0404} <= set(listed)
    # The feeds: content, Atom rel="related" and JSON Feed external_url per paper.
    atom = (project / "public/feeds/en/atom.xml").read_text(encoding="utf-8")
    assert "https://arxiv.org/abs/2504.02807" in atom
    tag_atom = (project / "public/feeds/en/tags/math/atom.xml").read_text(encoding="utf-8")
    assert '<link href="https://arxiv.org/abs/2504.02807" rel="related"/>' in tag_atom
    tag_json = json.loads((project / "public/feeds/en/tags/math/feed.json").read_bytes())
    assert tag_json["items"][0]["external_url"] == "https://arxiv.org/abs/2504.02807"
    rss = (project / "public/feeds/en/rss.xml").read_text(encoding="utf-8")
    assert "https://huggingface.co/papers/2504.02807" in rss
    # Cached: a second publish asks arXiv nothing, rewrites nothing, sends nothing.
    again = ok(run_cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    assert "links 2025-04-04: 4 found, 0 not found, 0 failed (0 requests)" in again.stdout
    assert len(server.seen) == 4 and len(emails(project, "2025-04-04")) == 1
    assert "site: wrote 0 files" in again.stdout
    assert status(project)["links"] == {
        "lookup": "arxiv",
        "found": 4,
        "not_found": 0,
        "failed": 0,
        "next_retry": None,
    }


def test_publish_links_each_paper_only_on_a_true_match_and_says_why_not(tmp_path, server):
    """Other case and punctuation: a link; the same title by other authors and
    no result: no link, and the reason, in `publish -v` and `links list`."""
    shouted = (ARXIV_DATA / "2501.11651.xml").read_text(encoding="utf-8")
    title = shouted.split("<title>")[1].split("</title>")[0]
    other = tmp_path / "2501.11651.xml"
    other.write_text(shouted.replace(title, title.upper().replace(" ", " -- ", 1)), "utf-8")
    server.add(other)  # arXiv writes this title in capitals, with a dash
    server.remove("2501.11747")  # only a paper of the same title by other authors is left
    server.add(DECOYS["2502.00001"])
    server.remove("2501.11873")  # nothing with this title at all
    project = make_project(tmp_path / "p", server, {"d.txt": sample("2025-01-22.txt")})
    done = ok(run_cli("publish", "--date", "2025-01-22", "--no-email", "-v", cwd=project))
    assert "links 2025-01-22: 2 found, 2 not found, 0 failed" in done.stdout
    assert (
        "3. Optimizing Pretraining Data Mixtures with LLM-Estimated Utility: no link: arXiv "
        "2502.00001 has this title but none of our authors (Alice Example, Bob Sample)"
    ) in done.stdout
    assert ": no link: arXiv has no paper with this title" in done.stdout
    html = page(project, "en", "2025-01-22")
    assert 'href="https://arxiv.org/abs/2501.11651"' in html  # other case and punctuation
    assert 'href="https://arxiv.org/abs/2501.12370"' in html
    assert "2502.00001" not in html  # never a wrong link
    listed = json.loads(ok(run_cli("links", "list", "--json", cwd=project)).stdout)
    assert [(r["position"], r["status"], r["arxiv_id"]) for r in listed] == [
        (1, "found", "2501.11651"),
        (2, "found", "2501.12370"),
        (3, "not_found", None),
        (4, "not_found", None),
    ]
    assert listed[3]["reason"] == "arXiv has no paper with this title"
    assert listed[0]["hf_url"] == "https://huggingface.co/papers/2501.11651"


def test_publish_after_a_503_then_the_daemon_retries_and_never_resends(tmp_path, server):
    """arXiv answers 503: publish goes on without links (and says when it tries
    again); the daemon, once the retry time has come, finds them and rewrites
    the pages and feeds that changed, and sends no email again."""
    today = dt.datetime.now(SEOUL).date()
    nowhere = sample("2025-05-19.txt")  # none of its papers is in this catalog
    for path in sorted(ARXIV_DATA.glob("2505.*.xml")):
        server.remove(path.stem)
    project = make_project(
        tmp_path,
        server,
        {"today.txt": sample("2025-04-04.txt", today), "2025-05-19.txt": nowhere},
    )
    server.then(("status", 503, {}))
    done = ok(run_cli("publish", "--date", today.isoformat(), cwd=project))
    assert f"links {today}: 0 found, 0 not found, 4 failed (1 request)" in done.stdout
    assert "arXiv answered HTTP 503" in done.stderr and "tried again after" in done.stderr
    assert 'class="links"' not in page(project, "en", today.isoformat())
    assert len(emails(project, today.isoformat())) == 1
    text, _ = mail(emails(project, today.isoformat())[0])
    assert "arxiv.org" not in text  # the email went out without links
    # The paper that failed waits for its retry time; the three never tried
    # (arXiv was unwell) are asked by the next run.
    retry = dt.datetime.fromisoformat(status(project)["links"]["next_retry"])
    assert status(project)["links"]["failed"] == 1

    from newsletter.config import load_config
    from newsletter.scheduler import Daemon

    config = load_config(project / "config.yaml")
    other = project / "public/en/2025-05-19/index.html"
    clock = [dt.datetime.now(SEOUL)]
    daemon = Daemon(config, now=lambda: clock[0])
    try:
        daemon.tick()  # the three never tried, and 2025-05-19's six (no result)
        assert len(server.seen) == 1 + 3 + 6
        html = page(project, "en", today.isoformat())
        assert 'href="https://arxiv.org/abs/2504.02807"' not in html  # waits
        assert all(f'href="https://arxiv.org/abs/{i}"' in html for i in IDS_0404[1:])
        other_written = other.stat().st_mtime_ns
        daemon.tick()  # nothing is due
        assert len(server.seen) == 10
        clock[0] = retry.astimezone(SEOUL) + dt.timedelta(seconds=1)
        daemon.tick()
    finally:
        daemon.close()
    assert len(server.seen) == 11
    html = page(project, "en", today.isoformat())
    assert all(f'href="https://arxiv.org/abs/{i}"' in html for i in IDS_0404)
    feed = (project / "public/feeds/en/atom.xml").read_text(encoding="utf-8")
    assert "https://arxiv.org/abs/2504.02807" in feed
    assert other.stat().st_mtime_ns == other_written  # no link changed there: not rewritten
    assert len(emails(project, today.isoformat())) == 1  # never sent again
    assert status(project)["links"]["found"] == 4


def test_a_slow_arxiv_costs_publish_its_budget_and_no_more(tmp_path, server):
    """arXiv hangs: the one request is cut at what is left of the budget, the
    rest wait for later, and the page and the email go out without links."""
    project = make_project(
        tmp_path,
        server,
        {"2025-04-04.txt": sample("2025-04-04.txt")},
        papers="timeout: 30\nbudget_seconds: 1.5",
    )
    server.then(("hang", 60))
    done = ok(run_cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    assert "the lookups' budget ran out (papers.budget_seconds); 4 papers left" in done.stderr
    assert "did not answer within" in done.stderr
    assert "(what was left of this digest's budget)" in done.stderr
    assert len(server.seen) == 1
    assert 'class="links"' not in page(project, "en", "2025-04-04")
    assert len(emails(project, "2025-04-04")) == 1
    assert status(project)["links"]["failed"] == 1  # the one that was tried


def test_dry_run_and_lookups_off_ask_arxiv_nothing(tmp_path, server):
    project = make_project(tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    dry = ok(run_cli("publish", "--date", "2025-04-04", "--force", "--dry-run", cwd=project))
    assert "links 2025-04-04: 0 found, 0 not found, 4 to look up" in dry.stdout
    assert not server.seen and not (project / "public").exists()
    config = project / "config.yaml"
    config.write_text(config.read_text() + "  lookup: off\n", encoding="utf-8")
    ok(run_cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    assert not server.seen
    assert "arxiv.org" not in page(project, "en", "2025-04-04")
    assert status(project)["links"] == {"lookup": "off"}


# --- the override file ---------------------------------------------------------------------


def test_the_override_file_wins_and_a_bad_one_stops_everything_first(tmp_path, server):
    project = make_project(tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    links = project / "links.yaml"
    links.write_text(
        "titles:\n"
        '  "MegaMath: Pushing the Limits of Open Math Corpora": '
        "https://example.org/megamath?lang=en&v=2\n"
        "dates:\n  2025-04-04:\n    2: none\n",
        encoding="utf-8",
    )
    done = ok(run_cli("publish", "--date", "2025-04-04", "--no-email", "-v", cwd=project))
    assert "1. MegaMath: Pushing the Limits of Open Math Corpora: example.org (override)" in (
        done.stdout
    )
    assert "2. MegaScale-Infer" in done.stdout and "as the override file says" in done.stdout
    assert len(server.seen) == 2  # only the papers the file does not settle
    html = page(project, "en", "2025-04-04")
    assert 'href="https://example.org/megamath?lang=en&amp;v=2"' in html  # escaped
    assert "2504.02263" not in html

    links.write_text("dates:\n  2025-04-04:\n    0: 2504.02807\n    2: not-an-id\n")
    shutil.rmtree(project / "public")
    for command in (
        ("publish", "--date", "2025-04-04", "--force"),
        ("build",),
        ("links", "refresh"),
        ("run",),
    ):
        result = run_cli(*command, cwd=project)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"{links}:3: dates.2025-04-04.0: a position is a whole number" in result.stderr
        assert f"{links}:4: dates.2025-04-04.2:" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (project / "public").exists() and not emails(project, "2025-04-04")


# --- build and links refresh -----------------------------------------------------------------


def test_build_writes_first_then_looks_up_newest_first_within_its_budget(tmp_path, server):
    digests = {p.name: p.read_text(encoding="utf-8") for p in SAMPLE_DIGESTS.glob("*.txt")}
    project = make_project(tmp_path, server, digests, papers="budget_seconds: 2")
    server.then(*[("ok",)] * 6, ("hang", 60))  # 2025-05-19's six, then arXiv hangs
    done = ok(run_cli("build", cwd=project))
    assert "links 2025-05-19: 6 found, 0 not found, 0 failed (6 requests)" in done.stdout
    assert "links 2025-04-04: 0 found, 0 not found, 4 failed (1 request)" in done.stdout
    assert "links: 1 issue still to look up; `newsletter run` looks them up" in done.stdout
    assert "1 issue still has papers to look up" in done.stderr
    assert 'href="https://arxiv.org/abs/2505.11432"' in page(project, "ko", "2025-05-19")
    assert 'class="links"' not in page(project, "ko", "2025-04-04")
    assert 'class="links"' not in page(project, "ko", "2025-01-22")
    newest = read_digest(SAMPLE_DIGESTS / "2025-05-19.txt").digest
    asked = [seen.query["search_query"] for seen in server.seen]
    assert asked[:6] == [title_query(entry.title) for entry in newest.entries]


def test_links_refresh_looks_up_again_and_rewrites_the_pages(tmp_path, server):
    project = make_project(tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    ok(run_cli("publish", "--date", "2025-04-04", "--no-email", cwd=project))
    assert len(server.seen) == 4
    moved = tmp_path / "2504.02807.xml"
    moved.write_text(
        (ARXIV_DATA / "2504.02807.xml").read_text(encoding="utf-8").replace("cs.CL", "math.NA"),
        encoding="utf-8",
    )
    server.add(moved)  # arXiv changed its primary category
    ok(run_cli("publish", "--date", "2025-04-04", "--no-email", cwd=project))
    assert len(server.seen) == 4  # cached: not asked again
    done = ok(run_cli("links", "refresh", "--date", "2025-04-04", cwd=project))
    assert "links 2025-04-04: 4 found, 0 not found, 0 failed (4 requests)" in done.stdout
    assert len(server.seen) == 8
    assert '<span class="category">math.NA</span>' in page(project, "en", "2025-04-04")
    off = project / "config.yaml"
    off.write_text(off.read_text() + "  lookup: off\n", encoding="utf-8")
    refused = run_cli("links", "refresh", cwd=project)
    assert refused.returncode == 2 and "papers.lookup is off" in refused.stderr


# --- the daemon ---------------------------------------------------------------------------


def test_the_daemon_sends_before_it_looks_up(tmp_path, server):
    """A due email never waits for arXiv: in the tick that sends it, lookups
    come after, and a hanging arXiv costs only the lookup budget."""
    from newsletter.config import load_config
    from newsletter.scheduler import Daemon

    today = dt.datetime.now(SEOUL).date()
    project = make_project(
        tmp_path,
        server,
        {"today.txt": sample("2025-04-04.txt", today)},
        papers="timeout: 30\nbudget_seconds: 1",
    )
    server.then(("hang", 60))
    events: list[str] = []
    daemon = Daemon(load_config(project / "config.yaml"))

    class Events(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append(getattr(record, "event", ""))

    handler = Events()
    logger = logging.getLogger("newsletter")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        daemon.tick()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        daemon.close()
    assert events.index("published") < events.index("sent") < events.index("links")
    assert "links_budget" in events
    (sent,) = emails(project, today.isoformat())
    assert "arxiv.org" not in mail(sent)[0]


# --- the safety net -------------------------------------------------------------------------


def test_no_test_can_reach_the_real_arxiv(tmp_path):
    """tests/netguard refuses arxiv.org here and in every process a test starts,
    and records each attempt (which fails the test that made it)."""
    log = Path(os.environ["NETGUARD_LOG"])
    before = log.stat().st_size
    try:
        with pytest.raises(socket.gaierror, match=r"tests must not reach export\.arxiv\.org"):
            socket.getaddrinfo("export.arxiv.org", 443)
        child = subprocess.run(
            [sys.executable, "-c", "import socket; socket.getaddrinfo('arxiv.org', 443)"],
            capture_output=True,
            text=True,
        )
        assert child.returncode == 1 and "tests must not reach arxiv.org" in child.stderr
        socket.getaddrinfo("127.0.0.1", 80)  # anything else resolves as before
        with log.open(encoding="utf-8") as handle:
            handle.seek(before)
            tried = [line.split()[1] for line in handle.read().splitlines()]
        assert tried == ["export.arxiv.org", "arxiv.org"]
    finally:
        with log.open("r+b") as handle:  # expected attempts: not this test's fault
            handle.truncate(before)


def test_a_database_that_cannot_be_opened_costs_the_links_not_the_site(tmp_path, server):
    project = make_project(tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    config = project / "config.yaml"
    missing = tmp_path / "no such folder" / "newsletter.db"
    config.write_text(config.read_text() + f"database_url: 'sqlite:///{missing}'\n", "utf-8")
    done = ok(run_cli("build", cwd=project))
    assert f"paper links: cannot open or write the database {missing}" in done.stderr
    assert "no lookups this run" in done.stderr
    assert not server.seen
    assert "MegaMath" in page(project, "en", "2025-04-04")


# --- feeds with links stay valid ---------------------------------------------------------


def test_feeds_with_links_pass_the_w3c_validator_and_json_feed_rules(site_config, site_digests):
    """Atom with rel="related", RSS with links in its content, JSON Feed with
    external_url: feedcheck.py (the W3C validator's code) and the JSON Feed
    1.1 rules accept them."""
    from helpers import with_sample_links
    from jsonfeed_rules import problems
    from test_feed_text import FEEDCHECK, assert_feedcheck_clean

    from newsletter.site import write_site

    write_site(site_config, [with_sample_links(d) for d in site_digests])
    public = site_config.paths.public
    feed = json.loads((public / "feeds/ko/tags/rl/feed.json").read_bytes())
    assert problems(feed) == []
    linked = {i["title"]: i.get("external_url") for i in feed["items"]}
    assert linked["Inference-Time Scaling for Generalist Reward Modeling"] == (
        "https://arxiv.org/abs/2504.02495"
    )
    assert sum(url is not None for url in linked.values()) == 1  # the others have none
    if FEEDCHECK is None:
        pytest.skip("../shared/tools/feedcheck.py is absent")
    for relative in ("feeds/ko/tags/rl/atom.xml", "feeds/en/rss.xml", "feeds/both/atom.xml"):
        assert_feedcheck_clean(public / relative, "https://example.org/papers/" + relative)


def test_the_daemon_reads_an_edited_override_file_and_keeps_the_last_good_one(tmp_path, server):
    from newsletter.config import load_config
    from newsletter.scheduler import Daemon

    project = make_project(
        tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")}, papers="lookup: off"
    )
    links = project / "links.yaml"
    links.write_text("dates:\n  2025-04-04:\n    1: 2504.02807\n", encoding="utf-8")
    events: list[tuple[str, str]] = []

    class Events(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            events.append((getattr(record, "event", ""), record.getMessage()))

    handler, logger = Events(), logging.getLogger("newsletter")
    logger.addHandler(handler)
    daemon = Daemon(load_config(project / "config.yaml"))
    try:
        daemon.tick()
        assert 'href="https://arxiv.org/abs/2504.02807"' in page(project, "en", "2025-04-04")
        links.write_text(
            "dates:\n  2025-04-04:\n    1: none\n    2: https://example.org/infer.pdf\n",
            encoding="utf-8",
        )
        daemon.tick()
        html = page(project, "en", "2025-04-04")
        assert "2504.02807" not in html and 'href="https://example.org/infer.pdf"' in html
        links.write_text("dates:\n  2025-04-04:\n    1: not a link at all\n", encoding="utf-8")
        daemon.tick()
        daemon.tick()  # logged once, not at every poll
    finally:
        daemon.close()
        logger.removeHandler(handler)
    assert 'href="https://example.org/infer.pdf"' in page(project, "en", "2025-04-04")
    bad = [message for event, message in events if event == "bad_links_file"]
    assert len(bad) == 1 and f"{links}:3: dates.2025-04-04.1:" in bad[0]
    assert not server.seen  # lookups off: only the file's links


# --- weekly pages and emails ---------------------------------------------------------------


def test_a_weekly_issue_shows_the_links_its_days_have(tmp_path, server):
    """`publish --week` asks arXiv nothing, keeps the links its days' pages got
    on the weekly page, and the weekly email carries them (HTML and text)."""
    project = make_project(
        tmp_path, server, {"2025-04-04.txt": sample("2025-04-04.txt")}, subscribers=0
    )
    ok(run_cli("subscribers", "add", "w@example.org", "--edition", "ko", "--cadence", "weekly",
               cwd=project))  # fmt: skip
    ok(run_cli("publish", "--date", "2025-04-04", "--no-email", cwd=project))
    assert len(server.seen) == 4
    weekly = project / "public/ko/weekly/2025-W14/index.html"
    before = weekly.read_bytes()
    html = before.decode("utf-8")
    for ident in IDS_0404:
        assert f'href="https://arxiv.org/abs/{ident}"' in html
        assert f'href="https://huggingface.co/papers/{ident}"' in html
    anchor = "2025-04-04-megamath-pushing-the-limits-of-open-math-corpora-4df9f0b0"
    assert f'class="self" href="#{anchor}"' in html and f'id="{anchor}"' in html
    assert "수학 및 코드 데이터 371B" in html

    ok(run_cli("publish", "--week", "2025-W14", "--force", cwd=project))
    assert len(server.seen) == 4  # no lookup for a week: its days were looked up
    assert weekly.read_bytes() == before  # the links stay
    (sent,) = sorted((project / "outbox").rglob("*.eml"))
    text, html = mail(sent)
    assert '<a href="https://arxiv.org/abs/2504.02807"' in html
    assert "수학 및 코드 데이터 371B" in html
    flat = " ".join(text.split())
    assert "arXiv:2504.02263 (cs.DC) [" in flat and "371B" in flat
    assert {f"https://arxiv.org/pdf/{i}" for i in IDS_0404} <= set(numbered_links(text).values())


# --- what arXiv says is text ------------------------------------------------------------------

HOSTILE_CATEGORY = 'cs.CL"><script>alert(1)</script>&{{ 7*7 }}'


def test_what_arxiv_answers_is_escaped_in_every_output(tmp_path, server):
    """A primary category with markup (the one free text a lookup brings)
    stays text: escaped in pages, email HTML, Atom, RSS (HTML inside XML) and
    JSON Feed, plain in the text part, never a template; Hangul intact."""
    import xml.etree.ElementTree as ET

    source = (ARXIV_DATA / "2504.02807.xml").read_text(encoding="utf-8")
    attribute = HOSTILE_CATEGORY.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    hostile = tmp_path / "2504.02807.xml"
    hostile.write_text(source.replace('term="cs.CL"', f'term="{attribute}"', 1), "utf-8")
    server.add(hostile)
    project = make_project(tmp_path / "p", server, {"2025-04-04.txt": sample("2025-04-04.txt")})
    ok(run_cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    # Text content: '"' may stay as it is (the email's HTML is reserialised).
    escaped = 'cs.CL"&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;{{ 7*7 }}'

    def markup(html: str, where: str) -> None:
        assert "<script" not in html and "49" not in html.split("alert(1)")[1][:40], where
        assert escaped in html.replace("&#34;", '"').replace("&quot;", '"'), where
        assert "수학 및 코드 데이터 371B" in html or where.startswith("en"), where

    for edition in ("ko", "en", "both"):
        markup(page(project, edition, "2025-04-04"), f"{edition} page")
        tag = project / f"public/{edition}/tags/math/index.html"
        markup(tag.read_text(encoding="utf-8"), f"{edition} tag page")
        for kind in ("atom", "rss"):
            feed = ET.parse(project / f"public/feeds/{edition}/{kind}.xml").getroot()
            # The HTML each feed carries, as a reader gets it after XML parsing.
            bodies = [
                node.text or ""
                for node in feed.iter()
                if node.tag
                in (
                    "{http://www.w3.org/2005/Atom}content",
                    "{http://purl.org/rss/1.0/modules/content/}encoded",
                )
            ]
            markup(next(b for b in bodies if "alert(1)" in b), f"{edition} {kind}")
        items = json.loads((project / f"public/feeds/{edition}/feed.json").read_bytes())["items"]
        markup(next(i["content_html"] for i in items), f"{edition} json")
    (sent,) = emails(project, "2025-04-04")
    text, html = mail(sent)
    markup(html, "both email html")
    assert f"arXiv:2504.02807 ({HOSTILE_CATEGORY}) [" in " ".join(text.split())
    assert "수학 및 코드 데이터 371B" in " ".join(text.split())
