"""Shared fixtures: sample digests and the real CLI in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SAMPLE_DIGESTS = DATA / "digests"


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m newsletter ARGS` as a real process; returns its result."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full_env.update({"PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


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
