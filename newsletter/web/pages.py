"""The bilingual pages of the web service (templates/web/), with their headers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from newsletter import tokens
from newsletter.model import Subscriber
from newsletter.templating import environment
from newsletter.web.choices import (
    CADENCE_NAMES,
    EDITION_NAMES,
    WEEKDAY_NAMES,
    choice_texts,
    edition_texts,
)
from newsletter.web.safety import Csrf, security_headers

if TYPE_CHECKING:
    from newsletter.config import Config

# Message pages: status and the way on (the sentences: templates/web/_texts.html).
MESSAGES: dict[str, tuple[int, str]] = {
    "sent": (200, ""),
    "confirmed": (200, "site"),
    "unsubscribed": (200, "subscribe"),
    "saved": (200, "site"),
    "not_subscribed": (200, "subscribe"),
    "bad_link": (400, "subscribe"),
    "expired": (400, "subscribe"),
    "stale": (400, "subscribe"),
    "bad_request": (400, "subscribe"),
    "csrf": (403, "subscribe"),
    "not_found": (404, "site"),
    "method": (405, "site"),
    "too_large": (413, "subscribe"),
    "rate": (429, "site"),
    "error": (500, "site"),
    "unavailable": (503, "subscribe"),
}


class Pages:
    """Renders the bilingual pages; every response gets the strict headers."""

    def __init__(self, config: Config, csrf: Csrf) -> None:
        self.config = config
        self.csrf = csrf
        self.env = environment(config)

    def _base(self) -> dict[str, Any]:
        return {
            "site_title": self.config.site.title,
            "site_url": self.config.site.base_url,
            "editions": [e.value for e in self.config.editions],
            "edition_names": EDITION_NAMES,
            "days": tokens.CONFIRM_MAX_AGE.days,
            "weekly_day": WEEKDAY_NAMES[self.config.schedule.weekly_day],
            "cadence_names": CADENCE_NAMES,
        }

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"web/{template}").render(self._base() | context)
        # Every header here too: the 500 page is sent outside the middleware.
        headers = security_headers(self.config) | {"Cache-Control": "no-store"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(self, kind: str, **values: str) -> HTMLResponse:
        """A page that only says something (success, or a friendly error); `kind`
        is a key of MESSAGES."""
        status, link = MESSAGES[kind]
        values = {"days": str(tokens.CONFIRM_MAX_AGE.days), **values}
        return self.render("message.html", status, kind=kind, values=values, link=link)

    def form(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page with a form: CSRF token in the form, its nonce in a cookie."""
        nonce, fresh = self.csrf.nonce(request)
        response = self.render(template, status, csrf=self.csrf.form_token(nonce), **context)
        if fresh:
            self.csrf.set_cookie(response, nonce)
        return response


def preference_texts(subscriber: Subscriber, weekly_day: str) -> dict[str, str]:
    """What a subscriber now gets, as message page values (`choices.choice_texts`),
    and from when, while a change of cadence waits for its week (since)."""
    since = subscriber.cadence_from.isoformat() if subscriber.cadence_from else ""
    if subscriber.previous_cadence is None:
        since = ""
    texts = choice_texts(subscriber.edition, subscriber.cadence, subscriber.topics, weekly_day)
    return texts | {"since": since}


__all__ = ["MESSAGES", "Pages", "edition_texts", "preference_texts"]
