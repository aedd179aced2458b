"""Helpers shared by the tests: sample data and the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


class GoldenRegenerated(UserWarning):
    """A golden file was rewritten from the output (NEWSLETTER_REGEN_GOLDEN=1)."""


def assert_golden(path: Path, actual: bytes | str) -> None:
    """Compare with a golden file; NEWSLETTER_REGEN_GOLDEN=1 rewrites it on purpose.

    Regenerating refuses to run when `CI` is set (CI compares, never rewrites), and
    says so loudly: a GoldenRegenerated warning per file, shown in pytest's summary.
    """
    data = actual.encode("utf-8") if isinstance(actual, str) else actual
    if os.environ.get("NEWSLETTER_REGEN_GOLDEN") == "1":
        import warnings

        import pytest

        if os.environ.get("CI"):
            pytest.fail(
                f"NEWSLETTER_REGEN_GOLDEN=1 with CI={os.environ['CI']!r}: golden files are "
                "never regenerated in CI (it would make every golden test pass); "
                "regenerate locally and commit the reviewed diff",
                pytrace=False,
            )
        old = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        what = "created" if old is None else ("CHANGED" if old != data else "unchanged")
        warnings.warn(
            GoldenRegenerated(
                f"NEWSLETTER_REGEN_GOLDEN=1: rewrote golden file {path} ({what}); "
                "this test compared nothing: review the diff"
            ),
            stacklevel=2,
        )
        return
    assert path.exists(), f"{path} is missing: run with NEWSLETTER_REGEN_GOLDEN=1"
    assert data == path.read_bytes(), (
        f"{path} differs from the output; if the change is intended, regenerate with "
        "NEWSLETTER_REGEN_GOLDEN=1 and review the diff"
    )


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium tries Google's hosts, which this closed network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def start_chromium(profile: Path, **capabilities: Any) -> Any:
    """Debian's headless Chromium through chromedriver (selenium).

    Chromium or chromedriver missing, or a browser that does not start: a skip
    with the reason, a failure under NEWSLETTER_REQUIRE_REAL=1 (real_parts).
    """
    import real_parts

    browser = real_parts.chromium()
    driver_path = real_parts.chromedriver()
    real_parts.import_real("selenium")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    for name, value in capabilities.items():
        options.set_capability(name, value)
    try:
        return webdriver.Chrome(options=options, service=Service(str(driver_path)))
    except (WebDriverException, OSError) as exc:
        real_parts.require_real(
            "Chromium", f"{browser} with {driver_path} did not start: {str(exc).strip()[:500]}"
        )
