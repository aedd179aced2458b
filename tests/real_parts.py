"""Real parts the tests start (PostgreSQL, Chromium, aiosmtpd, trustme, ...):
where their packages install them, and what happens when one is missing.

Every test that needs a real server, browser, program or library asks here
(PostgreSQL, Chromium and chromedriver with a Korean font, Dovecot,
SpamAssassin, Pagefind, aiosmtpd, trustme, psycopg, selenium, a tmpfs). A part
that is missing, or that is installed but fails to start, makes the test SKIP
with the reason (pytest prints it in the summary) - unless `NEWSLETTER_REQUIRE_REAL=1`
is set, as `.ci/run` does: then it FAILS, naming the part and how to install it.
So CI cannot be green while a real part quietly stayed out.

Parts are looked for on PATH first, then where their Debian packages put them
(`/usr/lib/postgresql/*/bin`, `/usr/bin/chromium`, ...). `NEWSLETTER_TEST_ROOT`
moves that second search under another folder (the tests of this mechanism use
it to stand for "the package is not installed"); it defaults to `/`.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

SWITCH = "NEWSLETTER_REQUIRE_REAL"


def required() -> bool:
    """Whether missing real parts fail the run (`NEWSLETTER_REQUIRE_REAL=1`)."""
    return os.environ.get(SWITCH, "") not in ("", "0")


def require_real(name: str, reason: str) -> NoReturn:
    """Give up on a real part: skip with `reason`, or fail under the switch.

    `name` is the part ("PostgreSQL", "chromedriver"); `reason` says what is
    missing or what failed, and how to install it.
    """
    message = f"real part {name} unavailable: {reason}"
    if required():
        pytest.fail(f"{message} ({SWITCH}=1: real parts may not be skipped)", pytrace=False)
    pytest.skip(message, allow_module_level=True)  # also from a helper imported at collection


def _root() -> Path:
    return Path(os.environ.get("NEWSLETTER_TEST_ROOT", "/"))


def _under_root(path: str) -> Path:
    return _root() / path.lstrip("/")


def import_real(module: str, package: str | None = None) -> ModuleType:
    """Import a test dependency that stands for a real part (aiosmtpd, trustme)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        require_real(
            package or module,
            f"cannot import {module} ({exc}); install the test extras: pip install -e '.[test]'",
        )


# --- PostgreSQL ------------------------------------------------------------------


def postgres_bindir() -> Path:
    """The folder holding `initdb` and `pg_ctl` (Debian: /usr/lib/postgresql/N/bin)."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            candidates.append(Path(out))
    versions = sorted(
        _under_root("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.name.split(".")],
        reverse=True,
    )
    candidates.extend(versions)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    looked = ", ".join(str(c) for c in candidates) or "nothing found"
    require_real(
        "PostgreSQL",
        f"initdb and pg_ctl not found on PATH, via pg_config --bindir or in "
        f"{_under_root('/usr/lib/postgresql')}/*/bin (looked at: {looked}); "
        "apt-get install postgresql",
    )


def program(name: str, package: str, places: tuple[str, ...] = ()) -> Path:
    """A program on PATH or at one of `places` (under NEWSLETTER_TEST_ROOT)."""
    found = _find((name,), places or (f"/usr/bin/{name}", f"/usr/sbin/{name}", f"/bin/{name}"))
    if found is None:
        require_real(
            name, f"{name} not found on PATH or in /usr/bin, /usr/sbin; apt-get install {package}"
        )
    return found


def runuser() -> Path:
    """util-linux's runuser (in /usr/sbin, often not on a user's PATH): initdb refuses root."""
    return program("runuser", "util-linux")


# --- Pagefind ------------------------------------------------------------------------


def pagefind() -> Path:
    """The Pagefind binary the site build runs (the pagefind[bin] wheel), checked to run."""
    from newsletter.site.search import SearchUnavailable, pagefind_binary

    try:
        return pagefind_binary()
    except SearchUnavailable as exc:
        require_real("Pagefind", f"{exc}; pip install -e '.[test]'")


# --- small file systems --------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(folder: Path, size_kb: int = 64) -> Iterator[Path]:
    """A real tmpfs of `size_kb` KiB mounted on `folder` (root only), for disk-full tests."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        require_real("tmpfs", "mounting a small file system needs root")
    mount = program("mount", "mount")
    umount = program("umount", "mount")
    done = subprocess.run(
        [str(mount), "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        require_real("tmpfs", f"cannot mount a tmpfs on {folder}: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([str(umount), "-l", str(folder)], capture_output=True)


# --- Chromium ----------------------------------------------------------------------


def _find(names: tuple[str, ...], places: tuple[str, ...]) -> Path | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    for place in places:
        path = _under_root(place)
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def chromium() -> Path:
    """Debian's Chromium browser binary."""
    found = _find(
        ("chromium", "chromium-browser"), ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
    )
    if found is None:
        require_real("Chromium", "no chromium on PATH or in /usr/bin; apt-get install chromium")
    return found


def korean_font() -> str:
    """A font with Hangul that Chromium can use (fontconfig's `fc-list :lang=ko`):
    without one the browser tests would measure layouts of boxes, not Korean."""
    fc_list = program("fc-list", "fontconfig")
    done = subprocess.run(
        [str(fc_list), ":lang=ko", "family"], capture_output=True, text=True, timeout=60
    )
    families = done.stdout.split()
    if done.returncode != 0 or not families:
        require_real(
            "Korean font",
            "fc-list :lang=ko finds no font with Hangul; apt-get install fonts-noto-cjk",
        )
    return families[0]


def chromedriver() -> Path:
    """Debian's chromedriver (package chromium-driver), which selenium drives."""
    found = _find(("chromedriver",), ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"))
    if found is None:
        require_real(
            "chromedriver",
            "Chromium is there but chromedriver is not (on PATH or in /usr/bin); "
            "apt-get install chromium-driver",
        )
    return found
