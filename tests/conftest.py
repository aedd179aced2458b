"""Shared fixtures: sample digests and the real CLI in a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS, run_cli


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
        "  outbox: outbox\n",
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
    }
    return config_from_dict(raw, base=tmp_path)


@pytest.fixture(scope="session")
def site_digests():
    """The three sample digests, oldest first."""
    from newsletter.digest import read_digest

    return [read_digest(SAMPLE_DIGESTS / name).digest for name in SITE_SAMPLES]
