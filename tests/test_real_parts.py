"""The real-parts mechanism itself: a missing part skips with its reason, and
fails, naming it, under NEWSLETTER_REQUIRE_REAL=1 (as in .ci/run).

"Missing" is made real: pytest runs in a subprocess with PATH cut down to the
virtualenv and NEWSLETTER_TEST_ROOT pointing at a folder where no package is
installed (or only Chromium, without chromedriver).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import real_parts

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(test: str, root: Path, *, require: bool) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEWSLETTER_", "PYTEST_")) and k != "PATH"
    }
    env |= {
        "PATH": str(Path(sys.executable).parent),
        "NEWSLETTER_TEST_ROOT": str(root),
        "NEWSLETTER_REQUIRE_REAL": "1" if require else "0",
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            test,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def skips_then_fails(test: str, root: Path, *said: str) -> None:
    """The test skips saying `said`; under the switch it fails saying it too."""
    skipped = run_pytest(test, root, require=False)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout
    failed = run_pytest(test, root, require=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "NEWSLETTER_REQUIRE_REAL=1: real parts may not be skipped" in failed.stdout
    assert "skipped" not in failed.stdout.splitlines()[-1]
    for text in said:
        assert text in skipped.stdout and text in failed.stdout


def test_missing_postgresql_skips_with_its_reason_and_fails_under_the_switch(tmp_path):
    skips_then_fails(
        "tests/test_store.py::test_add_normalises_and_is_unique[postgresql]",
        tmp_path,
        "real part PostgreSQL unavailable: initdb and pg_ctl not found",
        "apt-get install postgresql",
    )


def test_chromium_without_chromedriver_skips_and_fails_under_the_switch(tmp_path):
    browser = real_parts.chromium()  # the real one: only chromedriver is missing
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "bin" / "chromium").symlink_to(browser)
    skips_then_fails(
        "tests/test_web_browser.py::test_sign_up_confirm_and_unsubscribe_in_a_browser",
        tmp_path,
        "real part chromedriver unavailable",
        "apt-get install chromium-driver",
    )


@pytest.mark.parametrize(
    ("test", "part", "package"),
    [
        (
            "tests/test_bounces_mailboxes.py::test_imap_bad_password_is_a_clear_error",
            "dovecot",
            "dovecot-imapd",
        ),
        (
            "tests/test_spamassassin.py::test_every_edition_scores_below_one",
            "spamassassin",
            "spamassassin",
        ),
    ],
    ids=["Dovecot", "SpamAssassin"],
)
def test_missing_programs_skip_and_fail_under_the_switch(tmp_path, test, part, package):
    skips_then_fails(test, tmp_path, f"real part {part} unavailable", f"apt-get install {package}")


def test_the_parts_are_found_where_debian_installs_them(monkeypatch):
    # PATH without /usr/local/bin or any pg_config: the package folders still serve.
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    bindir = real_parts.postgres_bindir()
    assert bindir.match("/usr/lib/postgresql/*/bin")
    assert (bindir / "initdb").is_file()
    assert real_parts.chromium().name.startswith("chromium")
    assert real_parts.chromedriver().name == "chromedriver"
    assert real_parts.runuser().name == "runuser"
    assert real_parts.program("dovecot", "dovecot-imapd") == Path("/usr/sbin/dovecot")
    assert real_parts.program("spamassassin", "spamassassin") == Path("/usr/bin/spamassassin")
    assert real_parts.korean_font()


@pytest.mark.parametrize(("value", "fails"), [("1", True), ("0", False), ("", False)])
def test_require_real_skips_or_fails_by_the_switch(monkeypatch, value, fails):
    monkeypatch.setenv("NEWSLETTER_REQUIRE_REAL", value)
    expected = pytest.fail.Exception if fails else pytest.skip.Exception
    with pytest.raises(expected, match=r"real part Dovecot unavailable: no imapd; apt-get"):
        real_parts.require_real("Dovecot", "no imapd; apt-get install dovecot-imapd")
    with pytest.raises(expected, match=r"real part no_such_module_x unavailable: cannot import"):
        real_parts.import_real("no_such_module_x")
