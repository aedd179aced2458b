"""Helpers shared by the tests: sample data and the real CLI in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
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


@contextlib.contextmanager
def serve_in_thread(app: Any, port: int, **options: Any) -> Iterator[Any]:
    """An ASGI app under uvicorn on 127.0.0.1:port, in a thread, until the block ends."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120  # a hang guard only
    while not server.started:  # uvicorn sets it once the socket listens
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)


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


# Every element whose right edge lies beyond the viewport, as "tag.class: right".
OVERFLOWING = """
const width = window.innerWidth;
const out = [];
for (const el of document.querySelectorAll('body *')) {
  const box = el.getBoundingClientRect();
  if (box.width > 0 && box.right > width + 0.5) {
    out.push(el.tagName.toLowerCase() + '.' + el.className + ': ' + Math.round(box.right));
  }
}
return out;
"""


def start_chromium(profile: Path, **capabilities: Any) -> Any:
    """Debian's headless Chromium through chromedriver (selenium).

    Chromium or chromedriver missing, or a browser that does not start: a skip
    with the reason, a failure under NEWSLETTER_REQUIRE_REAL=1 (real_parts).
    """
    import real_parts

    browser = real_parts.chromium()
    driver_path = real_parts.chromedriver()
    real_parts.korean_font()
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


# --- what readers get: every output of one digest --------------------------------


def autolinks(html: str) -> list[str]:
    """The hrefs of the links made from bare URLs (link text == href), in order."""
    import lxml.html

    tree = lxml.html.fromstring(html)
    return [a.get("href") for a in tree.iter("a") if a.text_content() == a.get("href")]


def html_text(html: str) -> str:
    """The text a reader sees of an HTML fragment (or document)."""
    import lxml.html

    return lxml.html.fromstring(f"<div>{html}</div>").text_content()


def email_bodies(data: bytes) -> tuple[str, str]:
    """(text/plain, text/html) of a multipart/alternative message."""
    import email
    import email.policy

    message = email.message_from_bytes(data, policy=email.policy.default)
    text, html = (part.get_content() for part in message.iter_parts())
    return text, html


def numbered_links(text: str) -> dict[int, str]:
    """The email text part's numbered link list: {number: url}."""
    import re

    text = text.replace("\r\n", "\n")
    block = re.split(r"^(?:Links|링크|링크 · Links):$", text, flags=re.M)[1]
    return {int(n): url for n, url in re.findall(r"^\[(\d+)\] (\S+)$", block, re.M)}


def edition_email(config: Any, digest: Any, edition: Any, **kwargs: Any) -> bytes:
    """One edition's email, personalised for reader@example.com, at a fixed time."""
    import datetime as dt

    from newsletter.mail import build_edition_email
    from newsletter.tokens import DEV_SECRET, sign_token

    now = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.UTC)
    message = build_edition_email(config, digest, edition, now=now, **kwargs)
    token = sign_token(DEV_SECRET, "unsubscribe", "reader@example.com")
    return message.personalise("reader@example.com", "Reader", token)


def raw_parts(data: bytes) -> list[tuple[bytes, bytes]]:
    """(headers, body) of each part of a multipart message, as transmitted
    (body: the encoded bytes, without the CRLF that belongs to the boundary)."""
    import re

    boundary = re.search(rb'boundary="([^"]+)"', data)[1]  # type: ignore[index]
    chunks = data.split(b"\r\n--" + boundary)[1:-1]
    parts = []
    for chunk in chunks:
        headers, _, body = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        parts.append((headers, body))
    return parts


# The longest address (254 octets, RFC 5321): its token is the longest there is.
LONGEST_ADDRESS = "x" * 64 + "@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 57 + ".org"


# --- paper links for golden files (tests/golden/*: one of each kind) --------------


def with_sample_links(digest: Any) -> Any:
    """The 2025-04-04 sample digest with one link of each kind: two arXiv papers
    (the first given with a version, which is dropped), one paper without a
    link, one link set by hand to a URL that is not arXiv. Other digests are
    returned unchanged."""
    from newsletter.papers.links import PaperLink

    if digest.date.isoformat() != "2025-04-04":
        return digest
    return digest.with_links(
        [
            PaperLink.for_arxiv("2504.02807v1", "cs.CL"),
            None,
            PaperLink.for_arxiv("2504.02495", "cs.CL"),
            PaperLink.for_url("https://www.example.net/vanishing-variance.pdf"),
        ]
    )
