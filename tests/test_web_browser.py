"""The sign-up journey in headless Chromium: form, confirm button, unsubscribe button.

Needs Debian's chromium and chromium-driver and selenium; skipped when either
is missing (failed under NEWSLETTER_REQUIRE_REAL=1: tests/real_parts.py). The
375 px screenshot of the sign-up page is saved in the test's tmp dir; its path
is printed (see it with pytest -s or -rA).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import start_chromium
from test_web import SECRET, Running, link_in, server  # server: the fixture

from newsletter.model import SubscriberState
from newsletter.tokens import UNSUBSCRIBE, sign_token

__all__ = ["server"]  # used as a fixture by name


@pytest.fixture
def driver(tmp_path_factory: pytest.TempPathFactory):
    browser = start_chromium(
        tmp_path_factory.mktemp("chromium-profile"), **{"goog:loggingPrefs": {"browser": "ALL"}}
    )
    browser.set_page_load_timeout(15)
    yield browser
    browser.quit()


def _width(driver, width: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def _wait_for_heading(driver, text: str) -> None:
    """Wait for the next page (a click returns before it loads)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def arrived(d) -> bool:
        try:
            return text in d.find_element(By.TAG_NAME, "h1").text
        except (NoSuchElementException, StaleElementReferenceException):
            return False

    WebDriverWait(driver, 10, ignored_exceptions=()).until(
        arrived, f"no page with the heading {text!r}; got:\n{driver.page_source[:2000]}"
    )


def test_sign_up_confirm_and_unsubscribe_in_a_browser(
    driver, server: Running, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    address = "browser.reader@example.com"
    _width(driver, 375)
    driver.get(server.client.base + "subscribe")
    assert "구독하기" in driver.page_source
    # The stylesheet loaded despite the strict CSP: Korean typography applies.
    body_style = "return getComputedStyle(document.body).wordBreak"
    assert driver.execute_script(body_style) == "keep-all"
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
    shot = tmp_path / "subscribe-375.png"
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 0
    print(f"\nsign-up page at 375 px: {shot}")
    csp_errors = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert csp_errors == []

    driver.find_element(By.ID, "email").send_keys(address)
    driver.find_element(By.CSS_SELECTOR, 'input[name="edition"][value="both"]').click()
    driver.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
    _wait_for_heading(driver, "메일함을 확인하세요")
    assert server.state(address) is SubscriberState.PENDING

    # The link opens a page with one button; only the button confirms.
    driver.get(link_in(server.confirmation(address), "confirm"))
    _wait_for_heading(driver, "구독 확인")
    assert server.state(address) is SubscriberState.PENDING
    assert len(driver.find_elements(By.TAG_NAME, "button")) == 1
    driver.find_element(By.ID, "confirm").click()
    _wait_for_heading(driver, "구독이 시작되었습니다")
    assert server.state(address) is SubscriberState.ACTIVE

    token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)  # as in every newsletter
    driver.get(f"{server.client.base}unsubscribe?token={token}")
    assert server.state(address) is SubscriberState.ACTIVE  # the page alone changes nothing
    driver.find_element(By.ID, "unsubscribe").click()
    _wait_for_heading(driver, "수신 거부되었습니다")
    assert server.state(address) is SubscriberState.UNSUBSCRIBED


def test_preferences_change_cadence_and_topics_in_a_browser(
    driver, server: Running, tmp_path: Path
) -> None:
    """Weekly, only #rl: saved, shown again, and the next weekly email has only those papers."""
    import datetime as dt
    import email
    import email.policy
    import re

    from selenium.webdriver.common.by import By

    from newsletter.model import Cadence, Week
    from newsletter.publish import publish, publish_week
    from newsletter.transports.files import outbox_name

    address = "prefs.reader@example.com"
    with server.store() as store:
        store.subscribers.add(address, "ko")
    # Thursday 24 April 2025. The tags on offer are those of the 90 days up to
    # the newest issue (19 May): April's and May's, not January's alone.
    server.clock[0] = dt.datetime(2025, 4, 24, 3, 0, tzinfo=dt.UTC)
    token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)
    _width(driver, 375)
    driver.get(f"{server.client.base}preferences?token={token}")
    _wait_for_heading(driver, "구독 설정")
    offered = [e.get_attribute("value") for e in driver.find_elements(By.NAME, "topic")]
    assert offered[0] == "rl" and {"math", "long-context", "agent"} <= set(offered)
    assert "sparsity" not in offered  # only in January's issue: older than 90 days
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375
    driver.find_element(By.CSS_SELECTOR, 'input[name="cadence"][value="weekly"]').click()
    driver.find_element(By.CSS_SELECTOR, 'input[name="scope"][value="some"]').click()
    driver.find_element(By.CSS_SELECTOR, 'input[name="topic"][value="rl"]').click()
    driver.find_element(By.ID, "save").click()
    _wait_for_heading(driver, "설정을 저장했습니다")
    # A daily reader turning weekly on a Thursday: weekly from next Monday.
    assert "2025-04-28" in driver.find_element(By.ID, "saved-cadence").text
    with server.store() as store:
        saved = store.subscribers.get(address)
    assert (saved.cadence, saved.topics) == (Cadence.WEEKLY, ("rl",))
    assert saved.previous_cadence is Cadence.DAILY and str(saved.cadence_from) == "2025-04-28"

    driver.get(f"{server.client.base}preferences?token={token}")
    _wait_for_heading(driver, "구독 설정")
    checked = (
        "return [...document.querySelectorAll('input:checked')].map(e => e.name + '=' + e.value)"
    )
    assert set(driver.execute_script(checked)) == {
        "edition=ko",
        "cadence=weekly",
        "scope=some",
        "topic=rl",
    }
    assert "2025-04-28" in driver.find_element(By.ID, "cadence-note").text

    # The next emails: no daily one any more; the weekly one holds only #rl papers.
    config = server.config
    publish(config, dt.date(2025, 5, 19), force=True)
    assert not (config.paths.outbox / "2025-05-19" / outbox_name(address)).exists()
    publish_week(config, Week(2025, 21), force=True)
    path = config.paths.outbox / "2025-W21" / outbox_name(address)
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()
    tag_lines = re.findall(r"^#.+$", text.replace("\r\n", "\n"), re.M)
    assert tag_lines and all("#rl" in line.split() for line in tag_lines)
    assert message["Subject"].endswith(f"논문 {len(tag_lines)}편")
