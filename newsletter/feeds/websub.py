"""WebSub publishing: tell the hub which feeds changed (https://www.w3.org/TR/websub/).

WebSub leaves how a publisher notifies its hub to the hub; the common form,
which Google's and Superfeedr's hubs and websub.rocks take, is a form POST
of `hub.mode=publish` and `hub.url=FEED` (PubSubHubbub 0.4, section 7). One
POST per changed feed. A hub that fails or refuses is a warning: the feeds
are written already and readers' next poll finds them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from newsletter.plurals import nouns

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")

TIMEOUT = 10.0  # seconds per request


def changed_feed_urls(config: Config, written: Iterable[str]) -> list[str]:
    """The public URLs of the feed files among written paths (feeds/...)."""
    names = ("atom.xml", "rss.xml", "feed.json")
    return [
        config.site.base_url + path
        for path in sorted(written)
        if path.startswith("feeds/") and path.rsplit("/", 1)[-1] in names
    ]


def ping_hub(config: Config, feed_urls: list[str]) -> list[str]:
    """POST a publish notification for each feed URL to feeds.websub_hub.

    Returns one warning per failure (the caller shows or logs them); never
    raises for network or HTTP errors. No hub configured, or no URL: nothing
    is sent.
    """
    hub = config.feeds.websub_hub
    if not hub or not feed_urls:
        return []
    import requests

    warnings = []
    with requests.Session() as session:
        for url in feed_urls:
            try:
                response = session.post(
                    hub, data={"hub.mode": "publish", "hub.url": url}, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                warnings.append(f"WebSub hub {hub} not reached for {url}: {exc}")
                break  # the hub is down: the other feeds would fail alike
            if not 200 <= response.status_code < 300:
                warnings.append(
                    f"WebSub hub {hub} answered {response.status_code} for {url}: "
                    f"{response.text.strip()[:200]}"
                )
    if not warnings:
        log.info(
            "WebSub hub %s notified of %s",
            hub,
            nouns(len(feed_urls), "feed", "feeds"),
            extra={"event": "websub_ping", "feeds": len(feed_urls)},
        )
    return warnings
