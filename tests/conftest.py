"""Shared fixtures: sample digests and the real CLI in a subprocess; the
safety net that keeps every test off the real arXiv (tests/netguard)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS, run_cli

# No test, and no Python process a test starts, may reach arxiv.org: every one
# imports tests/netguard/sitecustomize.py, which refuses its name lookups and
# logs the attempt to $NETGUARD_LOG, one file per pytest process (checked after
# each test, below).
NETGUARD = Path(__file__).parent / "netguard"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(NETGUARD), *filter(None, [os.environ.get("PYTHONPATH")])]
)
_handle, os.environ["NETGUARD_LOG"] = tempfile.mkstemp(prefix="netguard-", suffix=".log")
os.close(_handle)
atexit.register(lambda path=os.environ["NETGUARD_LOG"]: Path(path).unlink(missing_ok=True))
_spec = importlib.util.spec_from_file_location("netguard", NETGUARD / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)  # guards this process too


@pytest.fixture(autouse=True)
def _no_real_arxiv():
    """Fail the test that tried to reach arXiv (or any process it started)."""
    log = Path(os.environ["NETGUARD_LOG"])
    before = log.stat().st_size if log.exists() else 0
    yield
    with log.open("rb") as handle:
        handle.seek(before)
        tried = handle.read().decode("utf-8", "replace")
    assert not tried, (
        "this test tried to reach the real arXiv (set papers.lookup: off, or point "
        f"papers.arxiv_api_url at tests/arxiv_server.py):\n{tried}"
    )


@pytest.fixture(scope="module")
def mail_pg_url():
    """A throw-away PostgreSQL server for one test module (tests/pg_server.py)."""
    from pg_server import postgres_server

    yield from postgres_server()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def digests_dir(tmp_path: Path) -> Path:
    """A fresh copy of the three sample digests."""
    folder = tmp_path / "digests"
    shutil.copytree(SAMPLE_DIGESTS, folder)
    return folder


@pytest.fixture
def project(tmp_path: Path, digests_dir: Path) -> Path:
    """A folder with config.yaml using relative paths and the sample digests."""
    (tmp_path / "config.yaml").write_text(
        "site:\n"
        "  title: ML Papers\n"
        "  base_url: https://example.org/papers/\n"
        "  timezone: Asia/Seoul\n"
        "paths:\n"
        "  digests: digests\n"
        "  public: public\n"
        "  state: state\n"
        "  outbox: outbox\n"
        "papers:\n"
        "  lookup: off\n",
        encoding="utf-8",
    )
    return tmp_path


# --- archive site and feeds (tests/test_site.py, test_feeds.py, test_browser.py) ---

SITE_SAMPLES = ("2025-01-22.txt", "2025-04-04.txt", "2025-05-19.txt")


@pytest.fixture
def site_config(tmp_path: Path):
    """The fixed config of the site/feed golden files; public/ under tmp_path."""
    from newsletter.config import config_from_dict

    raw = {
        "site": {
            "title": "ML Papers",
            "base_url": "https://example.org/papers/",
            "timezone": "Asia/Seoul",
        },
        "paths": {"public": "public"},
        "papers": {"lookup": "off"},
    }
    return config_from_dict(raw, base=tmp_path)


@pytest.fixture(scope="session")
def site_digests():
    """The three sample digests, oldest first."""
    from newsletter.digest import read_digest

    return [read_digest(SAMPLE_DIGESTS / name).digest for name in SITE_SAMPLES]


def pytest_report_header(config):
    import real_parts

    if real_parts.required():
        return "real parts: required (NEWSLETTER_REQUIRE_REAL=1): a missing one fails its tests"
    return "real parts: a missing one skips its tests (set NEWSLETTER_REQUIRE_REAL=1 to fail)"
