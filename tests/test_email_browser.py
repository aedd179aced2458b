"""Each edition's email in headless Chromium: nothing overflows at 375 px, light
or dark; in dark mode the separators and borders stand out from the background;
the content is 600 px wide on a desktop.

Needs Debian's chromium and chromium-driver (real parts: tests/real_parts.py). To look at
the emails yourself: `.venv/bin/python tests/email_screenshots.py --out DIR`.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import test_browser
from email_screenshots import email_html, overflowing, show
from helpers import with_sample_links
from smtp_servers import mail_config, sample_digest

from newsletter.model import Edition

driver = test_browser.driver  # the same Chromium fixture as the site's browser tests


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The HTML part of each edition of the sample and of a stress digest (long
    URLs, words and Hangul runs), as files."""
    folder = tmp_path_factory.mktemp("emails")
    config = mail_config(folder, postal_address="ML Papers, 1 Example-ro, Seoul 04524, Korea")
    stress = test_browser.stress_digest()
    # One paper of each kind: long words and URLs, then the sample's papers
    # with one paper link of each kind (helpers.with_sample_links).
    linked = with_sample_links(sample_digest())
    digest = dataclasses.replace(
        linked,
        entries=(*stress.entries, *linked.entries),
        links=(*[None] * len(stress.entries), *linked.links),
    )
    out = {}
    for edition in Edition:
        path = folder / f"{edition.value}.html"
        path.write_text(email_html(config, digest, edition), encoding="utf-8")
        out[edition] = path
    return out


def rgb(colour: str) -> tuple[float, float, float]:
    r, g, b = (int(x) for x in re.findall(r"\d+", colour)[:3])
    return (r, g, b)


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a CSS rgb() colour."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb(colour)
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(one: str, two: str) -> float:
    light, dark = sorted((luminance(one), luminance(two)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


STYLE = """
const pick = (selector, property) => getComputedStyle(document.querySelector(selector))[property];
return {
  background: pick('.container', 'backgroundColor'),
  entry: pick('.entry', 'borderBottomColor'),
  header: pick('.header', 'borderBottomColor'),
  comment: pick('.comment', 'borderLeftColor'),
  text: pick('.entry', 'color'),
  container: document.querySelector('.container').getBoundingClientRect().width,
};
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("edition", list(Edition))
def test_nothing_overflows_at_375_px(driver, pages, edition, scheme):
    show(driver, pages[edition], 375, scheme)
    assert overflowing(driver) == []


@pytest.mark.parametrize("edition", list(Edition))
def test_dark_mode_separators_and_borders_are_visible(driver, pages, edition):
    show(driver, pages[edition], 600, "dark")
    style = driver.execute_script(STYLE)
    assert luminance(style["background"]) < 0.05  # it is dark
    assert contrast(style["text"], style["background"]) >= 7
    # WCAG 2.1 (1.4.11) asks 3:1 of graphics that carry meaning.
    for border in ("entry", "header", "comment"):
        assert contrast(style[border], style["background"]) >= 3, (border, style)
    show(driver, pages[edition], 600, "light")
    light = driver.execute_script(STYLE)
    assert light["background"] != style["background"]
    assert contrast(light["entry"], light["background"]) >= 1.4  # a hairline, but seen


@pytest.mark.parametrize("edition", list(Edition))
def test_the_content_is_600_px_on_a_desktop(driver, pages, edition):
    show(driver, pages[edition], 900, "light")
    assert driver.execute_script(STYLE)["container"] == 600
