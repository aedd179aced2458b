"""The golden-file rule: compare always; regenerate only on purpose, never in CI,
and never silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GoldenRegenerated, assert_golden

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_regen(monkeypatch):
    monkeypatch.delenv("NEWSLETTER_REGEN_GOLDEN", raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_compare_passes_on_equal_bytes_and_fails_on_any_difference(tmp_path, no_regen):
    golden = tmp_path / "page.html"
    golden.write_bytes("<p>논문</p>\n".encode())
    assert_golden(golden, "<p>논문</p>\n")
    with pytest.raises(AssertionError, match="differs from the output"):
        assert_golden(golden, "<p>논문</p>")
    with pytest.raises(AssertionError, match="is missing"):
        assert_golden(tmp_path / "absent.html", "x")


def test_regenerating_rewrites_and_warns_loudly(tmp_path, monkeypatch, no_regen):
    monkeypatch.setenv("NEWSLETTER_REGEN_GOLDEN", "1")
    golden = tmp_path / "sub" / "feed.xml"
    with pytest.warns(GoldenRegenerated, match=r"rewrote golden file .*feed\.xml \(created\)"):
        assert_golden(golden, "<feed/>")
    assert golden.read_bytes() == b"<feed/>"
    with pytest.warns(GoldenRegenerated, match=r"\(CHANGED\).*compared nothing"):
        assert_golden(golden, b"<feed>2</feed>")
    assert golden.read_bytes() == b"<feed>2</feed>"
    with pytest.warns(GoldenRegenerated, match=r"\(unchanged\)"):
        assert_golden(golden, b"<feed>2</feed>")


@pytest.mark.parametrize("ci", ["true", "1"])
def test_regenerating_refuses_under_ci(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("NEWSLETTER_REGEN_GOLDEN", "1")
    monkeypatch.setenv("CI", ci)
    golden = tmp_path / "mail.eml"
    golden.write_bytes(b"old")
    with pytest.raises(pytest.fail.Exception, match="never regenerated in CI"):
        assert_golden(golden, b"new")
    assert golden.read_bytes() == b"old"


def test_a_golden_test_run_with_regen_under_ci_fails_and_writes_nothing():
    golden_dir = ROOT / "tests" / "golden"
    before = {p: p.read_bytes() for p in golden_dir.rglob("*") if p.is_file()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env |= {"NEWSLETTER_REGEN_GOLDEN": "1", "CI": "true"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "tests/test_feeds.py",
            "-k",
            "golden",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout
    assert "never regenerated in CI" in result.stdout
    assert " passed" not in result.stdout.splitlines()[-1]
    assert {p: p.read_bytes() for p in golden_dir.rglob("*") if p.is_file()} == before
