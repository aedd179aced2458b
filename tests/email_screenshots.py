"""Screenshots of every edition's email in headless Chromium, for a person to look at.

    .venv/bin/python tests/email_screenshots.py [--out DIR] [--digest FILE] [--big]

For each edition (ko, en, both) of the digest (default: the example digest of
2025-04-04; `--big`: the generated 60-paper Korean-heavy digest) it writes
DIR/<date>-<edition>-<375|600>-<light|dark>.png, full-page, as the HTML part
renders at a phone's width (375 px, mobile viewport) and a desktop client's
(600 px), with `prefers-color-scheme` light and dark. It prints, per shot,
whether anything overflows horizontally (test_email_browser.py asserts it).

Needs Debian's chromium and chromium-driver and selenium (the test extras).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WIDTHS = (375, 600)
SCHEMES = ("light", "dark")


def email_html(config: Any, digest: Any, edition: Any) -> str:
    """The decoded HTML part of an edition's email, as the file transport writes it."""
    import email
    import email.policy

    from newsletter.mail import build_edition_email
    from newsletter.tokens import DEV_SECRET, UNSUBSCRIBE, sign_token

    now = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.UTC)
    address = "reader@example.com"
    message = build_edition_email(config, digest, edition, now=now)
    data = message.personalise(address, "Reader", sign_token(DEV_SECRET, UNSUBSCRIBE, address))
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    return [part.get_content() for part in parsed.iter_parts()][1]


def show(driver: Any, page: Path, width: int, scheme: str) -> None:
    """Load `page` at `width` CSS px (a mobile viewport below 600) in `scheme`."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    driver.get(page.as_uri())


def overflowing(driver: Any) -> list[str]:
    """Every element past the viewport's right edge (helpers.OVERFLOWING), and the
    page itself if it scrolls sideways."""
    from helpers import OVERFLOWING

    over = list(driver.execute_script(OVERFLOWING))
    width = driver.execute_script("return [document.documentElement.scrollWidth, innerWidth]")
    return over + ([f"page: {width[0]}"] if width[0] > width[1] else [])


def full_page_png(driver: Any, width: int) -> bytes:
    import base64

    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    return base64.b64decode(shot["data"])


def main() -> None:
    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("email-screenshots"))
    parser.add_argument("--digest", type=Path, help="a digest file (default: 2025-04-04)")
    parser.add_argument("--big", action="store_true", help="the generated 60-paper digest")
    args = parser.parse_args()

    from big_digest import big_digest
    from helpers import start_chromium
    from smtp_servers import mail_config, sample_digest

    from newsletter.digest import read_digest
    from newsletter.model import Edition

    if args.big:
        digest = big_digest()
    elif args.digest:
        digest = read_digest(args.digest).digest
    else:
        digest = sample_digest()
    args.out.mkdir(parents=True, exist_ok=True)
    config = mail_config(args.out, postal_address="ML Papers, 1 Example-ro, Seoul 04524, Korea")
    driver = start_chromium(args.out / ".chromium-profile")
    try:
        for edition in Edition:
            page = args.out / f"{digest.date}-{edition.value}.html"
            page.write_text(email_html(config, digest, edition), encoding="utf-8")
            for width in WIDTHS:
                for scheme in SCHEMES:
                    show(driver, page, width, scheme)
                    png = args.out / f"{digest.date}-{edition.value}-{width}-{scheme}.png"
                    png.write_bytes(full_page_png(driver, width))
                    over = overflowing(driver)
                    print(f"{png}  {'overflows: ' + ', '.join(over) if over else 'fits'}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
