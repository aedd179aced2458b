"""Issue pages in a real browser: nothing overflows horizontally at 375 and 1280 px.

Needs Debian's chromium and chromium-driver (apt-get install chromium
chromium-driver) and selenium; found and skipped (or failed under
NEWSLETTER_REQUIRE_REAL=1) by tests/real_parts.py.
Screenshots at 375 px are saved under the test's tmp dir (pytest prints it with
-rA; look for *-375.png).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from helpers import OVERFLOWING, start_chromium, with_sample_links

from newsletter.model import Digest, Entry
from newsletter.site import write_site

EDITIONS = ("ko", "en", "both")
WIDTHS = (375, 1280)

LONG_URL = "https://example.org/" + "a-very-long-path-segment-without-breaks" * 6 + "?q=" + "x" * 80
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3
LONG_HANGUL = "띄어쓰기없이아주길게이어지는한국어문장" * 8


def stress_digest() -> Digest:
    """Long URLs, words and Hangul runs: what breaks layouts on phones."""
    entry = Entry(
        title=f"{LONG_WORD}: A Title That Goes On {LONG_URL}",
        authors=tuple(f"Author{i} {LONG_WORD[:20]}" for i in range(30)),
        abstract=f"See {LONG_URL} and ({LONG_URL}). {LONG_WORD}.",
        comment_ko=f"{LONG_HANGUL} 링크 {LONG_URL} 참고.",
        comment_en=f"English {LONG_WORD} with {LONG_URL}.",
        tags=("very-long-tag-" + "x" * 60, "추론", "gpt-4.5"),
    )
    return Digest(dt.date(2025, 7, 1), (entry,), "stress.txt")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def public(tmp_path_factory, site_digests) -> Path:
    from newsletter.config import config_from_dict

    base = tmp_path_factory.mktemp("site")
    raw = {"site": {"base_url": "https://example.org/papers/"}, "paths": {"public": "public"}}
    config = config_from_dict(raw, base=base)
    # 2025-04-04 with one paper link of each kind (the links line must fit too).
    write_site(config, [*map(with_sample_links, site_digests), stress_digest()])
    return config.paths.public


def set_width(driver, width: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("date", ["2025-04-04", "2025-07-01"])
def test_issue_page_fits_the_viewport(driver, public, tmp_path, edition, width, date):
    set_width(driver, width)
    driver.get((public / edition / date / "index.html").as_uri())
    assert driver.execute_script("return window.innerWidth") == width
    scroll_width = driver.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"page is {scroll_width}px wide at {width}px"
    assert driver.execute_script(OVERFLOWING) == []
    if width == 375:
        shot = tmp_path / f"{edition}-{date}-375.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 0


@pytest.mark.parametrize(
    "page",
    [
        "index.html",
        "ko/index.html",
        "en/tags/추론/index.html",
        "ko/tags/index.html",
        "ko/search/index.html",
    ],
)
def test_index_pages_fit_a_phone(driver, public, page):
    set_width(driver, 375)
    driver.get((public / page).as_uri())
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
    assert driver.execute_script(OVERFLOWING) == []
