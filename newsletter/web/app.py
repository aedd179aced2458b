"""The subscription web service's application: `create_app` and its routes.

    GET  /subscribe            bilingual sign-up form (CSRF-protected)
    POST /subscribe            pending subscriber + confirmation email (double opt-in)
    GET  /confirm?token=&edition=   a page with one button: GET never confirms
    POST /confirm?token=&edition=   the button: activates a pending subscriber
    GET  /unsubscribe?token=   a page with one button: GET never unsubscribes
    POST /unsubscribe?token=   unsubscribes, whatever the body (RFC 8058 one-click)
    GET|POST /preferences?token=   change edition, cadence, topics (the POST is CSRF-protected)
    POST /webhooks/...         provider bounce and complaint webhooks (web/webhooks_routes.py)
    /...                       paths.public (archive, feeds) as static files

No GET or HEAD changes anything: mail scanners fetch every link in a message.
The signed token in a link is the authority for its POST (/confirm,
/unsubscribe); CSRF protection is for the forms that rely on the browser's
cookie (/subscribe, /preferences). The handlers parse the request, apply the
rate limits and CSRF check, and call `Subscriptions` (the rules) in the thread
pool: nothing blocking runs on the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from newsletter import tokens
from newsletter.cadence import WeeklySchedule
from newsletter.files import is_hidden, served_type
from newsletter.logs import printable
from newsletter.model import Cadence, Edition, parse_topics
from newsletter.store.database import Database
from newsletter.store.subscribers import Preferences, Subscribers
from newsletter.topics import TagCatalog
from newsletter.web.pages import Pages, edition_texts, preference_texts
from newsletter.web.safety import (
    STATIC_CSP,
    AccessLog,
    BodyLimit,
    Csrf,
    Limits,
    SecurityHeaders,
    SlidingWindow,
    security_headers,
)
from newsletter.web.subscriptions import (
    ConfirmLink,
    DeliveryProblem,
    Subscriptions,
    usable_address,
)
from newsletter.web.webhooks_routes import webhook_routes

if TYPE_CHECKING:
    from newsletter.bounces.sns import Certificates
    from newsletter.config import Config

log = logging.getLogger("newsletter.web")


class PublicFiles:
    """paths.public (archive pages, feeds) with the CSP its inline <style> needs;
    dotfiles and dot-folders are 404, like files that are not there; feeds
    get their own media types (`files.served_type`), not application/xml."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_hidden(scope["path"]):
            raise HTTPException(status_code=404)

        feed_type = served_type(scope["path"])

        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = STATIC_CSP
                ranges = headers.get("Content-Type", "").startswith("multipart/")
                if feed_type and message["status"] < 300 and not ranges:
                    headers["Content-Type"] = feed_type
            await send(message)

        await self.files(scope, receive, send_with_csp)


# --- the app -------------------------------------------------------------------------


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _client_ip(request: Request) -> str:
    # uvicorn has already applied X-Forwarded-For from trusted proxies.
    return request.client.host if request.client else "unknown"


def create_app(
    config: Config,
    *,
    limits: Limits | None = None,
    clock: Callable[[], dt.datetime] = _utcnow,
    certificates: Certificates | None = None,
) -> Starlette:
    """The ASGI app; NewsletterError at once without $NEWSLETTER_SECRET or a database.

    `certificates`: where SNS signing certificates may come from (tests only).
    """
    secret = config.secret(required=True)
    assert secret is not None
    limits = limits or Limits()
    db = Database.open(config)
    config.paths.public.mkdir(parents=True, exist_ok=True)
    service = Subscriptions(config, secret, Subscribers(db), clock)
    csrf = Csrf(secret, secure_cookie=str(config.server.public_url).startswith("https://"))
    pages = Pages(config, csrf)
    per_ip = SlidingWindow(limits.per_ip, limits.window_seconds)
    per_address = SlidingWindow(limits.per_address, limits.window_seconds)
    catalog = TagCatalog(config)
    handlers = _Handlers(config, service, pages, csrf, per_ip, per_address, catalog)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        db.close()

    routes = [
        Route("/subscribe", handlers.subscribe_form, methods=["GET"]),
        Route("/subscribe", handlers.subscribe, methods=["POST"]),
        Route("/confirm", handlers.confirm_page, methods=["GET"]),
        Route("/confirm", handlers.confirm, methods=["POST"]),
        Route("/unsubscribe", handlers.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", handlers.unsubscribe, methods=["POST"]),
        Route("/preferences", handlers.preferences_page, methods=["GET"]),
        Route("/preferences", handlers.save_preferences, methods=["POST"]),
        Route("/_web/style.css", handlers.stylesheet, methods=["GET"]),
        *webhook_routes(config, db, certificates),
        # Last: everything else is the published site.
        Mount("/", app=PublicFiles(config.paths.public)),
    ]
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders, headers=security_headers(config)),
            Middleware(AccessLog),
            Middleware(
                BodyLimit,
                max_bytes=limits.max_body_bytes,
                too_large=lambda: pages.message("too_large"),
            ),
        ],
        exception_handlers={
            HTTPException: handlers.http_error,
            Exception: handlers.server_error,
        },
        lifespan=lifespan,
    )


_HTTP_PAGES = {400: "bad_request", 403: "csrf", 404: "not_found", 405: "method", 413: "too_large"}


@dataclass
class _Handlers:
    config: Config
    service: Subscriptions
    pages: Pages
    csrf: Csrf
    per_ip: SlidingWindow
    per_address: SlidingWindow
    catalog: TagCatalog

    # -- sign-up --

    def _tags(self, chosen: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The topics on offer: the tags of the 90 days up to the newest issue,
        most used first, then any the reader chose that fell out of use (count
        None). Empty: the pages leave the topic choice out."""
        recent = self.catalog.recent()
        offered = [{"key": t.key, "name": t.name, "count": t.count} for t in recent]
        known = {t.key for t in recent}
        offered += [{"key": key, "name": key, "count": None} for key in chosen if key not in known]
        return offered

    async def subscribe_form(self, request: Request) -> Response:
        tags = await run_in_threadpool(self._tags)
        return self.pages.form(
            request,
            "subscribe.html",
            email="",
            edition=None,
            error=None,
            cadence="daily",
            topics=(),
            tags=tags,
        )

    async def subscribe(self, request: Request) -> Response:
        form = await _form(request)
        if not self.csrf.ok(request, form):
            return self.pages.message("csrf")
        email = _field(form, "email")
        edition = _edition(_field(form, "edition"), self.config)
        address = usable_address(email)
        chosen = _chosen(form, self.config, keep=False)
        if address is None or edition is None or isinstance(chosen, str):
            problem = "email" if address is None else "edition" if edition is None else chosen
            return await self._form_error(request, email, edition, problem, form)
        ip = _client_ip(request)
        if self.per_ip.full(ip) or self.per_address.full(address.lower()):
            log.warning("sign-up rate limit reached (ip %s)", printable(ip))
            wait = max(self.per_ip.retry_after(ip), self.per_address.retry_after(address.lower()))
            response = self.pages.message("rate")
            response.headers["Retry-After"] = str(wait)
            return response
        self.per_ip.add(ip)
        self.per_address.add(address.lower())
        assert not isinstance(chosen, str)
        try:
            await run_in_threadpool(self.service.request, address, edition, chosen)
        except DeliveryProblem:
            return self.pages.message("unavailable")
        return self.pages.message("sent", address=address)

    async def _form_error(
        self, request: Request, email: str, edition: Edition | None, problem: str, form: Any
    ) -> Response:
        ko, en = _FORM_ERRORS[problem]
        cadence = _field(form, "cadence")
        topics = tuple(dict.fromkeys(_topic_values(form)))[:50]
        tags = await run_in_threadpool(self._tags, topics)
        return self.pages.form(
            request,
            "subscribe.html",
            400,
            email=email[:320],
            edition=edition.value if edition else None,
            error={"ko": ko, "en": en, "field": problem},
            cadence=cadence if cadence in ("daily", "weekly") else "daily",
            topics=topics,
            tags=tags,
        )

    def _confirm_link(self, request: Request) -> ConfirmLink | Response:
        """The request's confirmation link, or the page that says what is wrong with it."""
        edition = _edition(request.query_params.get("edition", ""), self.config)
        if edition is None:
            return self.pages.message("bad_link")
        try:
            return self.service.confirm_link(request.query_params.get("token", ""), edition)
        except tokens.ExpiredToken:
            return self.pages.message("expired")
        except tokens.InvalidToken:
            return self.pages.message("bad_link")

    async def _confirm_outcome(self, link: ConfirmLink, state: str) -> Response:
        """The page after a confirmation: what the reader now gets (edition,
        cadence, topics), or why the link no longer works."""
        if state == "stale":
            return self.pages.message("stale")
        current = await run_in_threadpool(self.service.active, link.address)
        if current is None:  # left again since: what the link confirmed is gone
            return self.pages.message("stale")
        texts = preference_texts(current, self.config.schedule.weekly_day)
        return self.pages.message("confirmed", address=link.address, **texts)

    async def confirm_page(self, request: Request) -> Response:
        """Only a page with one button: mail scanners fetch links, so GET confirms nothing."""
        link = self._confirm_link(request)
        if isinstance(link, Response):
            return link
        state = await run_in_threadpool(self.service.link_state, link)
        if state != "pending":
            return await self._confirm_outcome(link, state)
        return self.pages.render(
            "confirm.html",
            address=link.address,
            token=request.query_params["token"],
            edition=link.edition.value,
            **edition_texts(link.edition),
        )

    async def confirm(self, request: Request) -> Response:
        """The page's button; the signed link is the authority (no cookie needed)."""
        link = self._confirm_link(request)
        if isinstance(link, Response):
            return link
        state = await run_in_threadpool(self.service.confirm, link)
        if state == "confirmed":
            log.info("confirmed %s (%s)", link.address, link.edition.value)
        return await self._confirm_outcome(link, state)

    # -- unsubscribe --

    def _unsubscribe_address(self, request: Request) -> str | None:
        return self.service.address_of(request.query_params.get("token"))

    async def unsubscribe_page(self, request: Request) -> Response:
        """Only a page: mail scanners follow GET links, so GET changes nothing."""
        address = self._unsubscribe_address(request)
        if address is None:
            return self.pages.message("bad_link")
        return self.pages.form(
            request,
            "unsubscribe.html",
            address=address,
            token=request.query_params["token"],
        )

    async def unsubscribe(self, request: Request) -> Response:
        """Any POST whose token verifies: RFC 8058 one-click or the page's button.

        The signed token is the authority, so the body is not read at all: mail
        clients send the RFC 8058 form body, an empty one, text/plain, multipart
        or no Content-Type, and each must work. 200, never a redirect (mail
        providers do not follow one).
        """
        address = self._unsubscribe_address(request)
        if address is None:
            return self.pages.message("bad_link")
        await run_in_threadpool(self.service.unsubscribe, address)
        log.info("unsubscribed %s", address)
        return self.pages.message("unsubscribed", address=address)

    # -- preferences --

    async def preferences_page(self, request: Request) -> Response:
        address = self._unsubscribe_address(request)
        if address is None:
            return self.pages.message("bad_link")
        current = await run_in_threadpool(self.service.active, address)
        if current is None:
            return self.pages.message("not_subscribed", address=address)
        tags = await run_in_threadpool(self._tags, current.topics)
        pending = current.cadence_from is not None and current.previous_cadence is not None
        return self.pages.form(
            request,
            "preferences.html",
            address=address,
            token=request.query_params["token"],
            current=current.edition.value,
            cadence=current.cadence.value,
            previous=current.previous_cadence.value if current.previous_cadence else None,
            cadence_from=current.cadence_from.isoformat()
            if pending and current.cadence_from
            else None,
            topics=current.topics,
            tags=tags,
        )

    async def save_preferences(self, request: Request) -> Response:
        address = self._unsubscribe_address(request)
        form = await _form(request)
        if address is None:
            return self.pages.message("bad_link")
        if not self.csrf.ok(request, form):
            return self.pages.message("csrf")
        edition = _edition(_field(form, "edition"), self.config)
        chosen = _chosen(form, self.config, keep=True)
        if edition is None or isinstance(chosen, str):
            return self.pages.message("bad_request")
        saved = await run_in_threadpool(self.service.change, address, edition, chosen)
        if saved is None:
            return self.pages.message("not_subscribed", address=address)
        texts = preference_texts(saved, self.config.schedule.weekly_day)
        return self.pages.message("saved", address=address, **texts)

    # -- assets and errors --

    async def stylesheet(self, request: Request) -> Response:
        css = self.pages.env.get_template("web/style.css").render()
        return Response(
            css,
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        response = self.pages.message(_HTTP_PAGES.get(status, "bad_request"))
        response.status_code = status
        if status == 405 and isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)  # Allow
        return response

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # The traceback goes to the server log (uvicorn logs the re-raised error);
        # the client sees a friendly page and nothing of the internals.
        log.error(
            "500 on %s %s: %s",
            printable(request.method),
            printable(request.url.path),
            type(exc).__name__,
        )
        return self.pages.message("error")


async def _form(request: Request) -> Any:
    """The form fields (no files; a handful of fields is all we ever need)."""
    return await request.form(max_files=0, max_fields=20)


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


_FORM_ERRORS = {
    "email": ("올바른 이메일 주소를 입력해 주세요.", "Please enter a valid email address."),
    "edition": ("받을 판을 골라 주세요.", "Please choose an edition."),
    "topics": (
        "태그를 하나 이상 고르거나 '모든 논문'을 골라 주세요.",
        "Please choose at least one tag, or every paper.",
    ),
}


def _topic_values(form: Any) -> list[str]:
    return [value for value in form.getlist("topic") if isinstance(value, str)][:200]


def _chosen(form: Any, config: Config, *, keep: bool) -> Preferences | str:
    """Cadence and topics from a form; "topics" when they make no sense (none
    chosen with 'only these tags', or one that is not a tag). `keep`: a field
    left out keeps what the subscriber has (else: daily, every paper)."""
    cadence_text = _field(form, "cadence")
    cadence = Cadence(cadence_text) if cadence_text in ("daily", "weekly") else None
    if cadence is None and not keep:
        cadence = Cadence.DAILY
    scope = _field(form, "scope")
    topics: tuple[str, ...] | None = None if keep and scope not in ("all", "some") else ()
    if scope == "some":
        try:
            topics = parse_topics(_topic_values(form))
        except ValueError:
            return "topics"
        if not topics:
            return "topics"
    return Preferences(cadence=cadence, topics=topics, schedule=WeeklySchedule.of(config))


def _edition(value: str, config: Config) -> Edition | None:
    try:
        edition = Edition(value)
    except ValueError:
        return None
    return edition if edition in config.editions else None
