"""The subscription web service (`newsletter serve`): Starlette on uvicorn.

    GET  /subscribe            bilingual sign-up form (CSRF-protected)
    POST /subscribe            pending subscriber + confirmation email (double opt-in)
    GET  /confirm?token=&edition=   activates a pending subscriber (token expires)
    GET  /unsubscribe?token=   a page with one button: GET never unsubscribes
    POST /unsubscribe?token=   the button (CSRF) or RFC 8058 one-click (token only)
    GET|POST /preferences?token=   change edition
    /...                       paths.public (archive, feeds) as static files

Every public answer to a sign-up is the same whether or not the address is
known: a confirmation is mailed to a new, pending or departed address, and an
"already subscribed" note to an active one. Nothing blocking runs on the event
loop: the database and the transport are called in the thread pool, one database
user at a time (a Database is not thread-safe).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import tokens
from newsletter.errors import NewsletterError
from newsletter.mail import UNSUBSCRIBE, check_address, one_line, sign_token, unsubscribe_url
from newsletter.model import Edition, SubscriberState
from newsletter.render import environment
from newsletter.store.database import Database
from newsletter.store.subscribers import Subscribers, normalize_email
from newsletter.transports import FileTransport, SendFailure, Transport, make_transport

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter.web")

# --- limits (constants; create_app takes a Limits to change them) ---------------

MAX_BODY_BYTES = 16 * 1024
SIGNUPS_PER_IP_PER_HOUR = 10
SIGNUPS_PER_ADDRESS_PER_HOUR = 3
RATE_WINDOW_SECONDS = 3600.0
# Keys kept by each in-memory window before old ones are dropped (memory bound).
RATE_MAX_KEYS = 100_000

CSRF_COOKIE = "nl_csrf"
# Confirmation emails of the file transport: outbox/confirmations/<address>.eml.
CONFIRMATIONS_FOLDER = "confirmations"

# No inline script or style anywhere on our pages: the stylesheet is a file.
APP_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# The published site inlines its stylesheet in a <style> element (it must also
# work as plain files), so its pages need 'unsafe-inline' for styles only.
STATIC_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Links carry tokens: never send them on in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}

EDITION_NAMES: dict[str, tuple[str, str]] = {
    "ko": ("한국어 코멘트", "Korean comments"),
    "en": ("영어 코멘트", "English comments"),
    "both": ("한국어와 영어 코멘트", "Korean and English comments"),
}


@dataclass(frozen=True)
class Limits:
    """Abuse bounds; the defaults are the module constants."""

    per_ip: int = SIGNUPS_PER_IP_PER_HOUR
    per_address: int = SIGNUPS_PER_ADDRESS_PER_HOUR
    window_seconds: float = RATE_WINDOW_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES


# --- message pages: status and the way on (the sentences: templates/web/_texts.html)

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


# --- rate limiting -------------------------------------------------------------


class SlidingWindow:
    """At most `limit` events per key within `window` seconds, in memory.

    Only touched from the event loop thread, so no lock. Per process: several
    workers would each allow `limit` (run one process; see the README).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = RATE_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._events: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        events = self._events.get(key)
        if events is None:
            return collections.deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        return events

    def full(self, key: str) -> bool:
        """Whether one more event for key would go over the limit."""
        return len(self._recent(key, self.clock())) >= self.limit

    def add(self, key: str) -> None:
        now = self.clock()
        events = self._recent(key, now)
        events.append(now)
        self._events[key] = events
        self._events.move_to_end(key)
        # Drop the least recently used keys: memory stays bounded under a flood
        # of distinct keys (which then, at worst, are forgotten early).
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)

    def retry_after(self, key: str) -> int:
        """Seconds until key has room again (0 if it has now)."""
        now = self.clock()
        events = self._recent(key, now)
        if len(events) < self.limit:
            return 0
        return max(1, int(events[0] + self.window - now) + 1)


# --- the confirmation email ----------------------------------------------------


def confirm_url(config: Config, token: str, edition: Edition) -> str:
    return f"{config.server.public_url}confirm?token={token}&edition={edition.value}"


def preferences_url(config: Config, token: str) -> str:
    return f"{config.server.public_url}preferences?token={token}"


def build_confirmation(
    config: Config,
    secret: bytes,
    address: str,
    edition: Edition,
    kind: str,
    now: dt.datetime,
) -> tuple[str, bytes]:
    """(envelope recipient, message bytes) of a confirmation or "already subscribed" mail.

    One message per request: EmailMessage's ~5 ms do not matter here.
    """
    checked = check_address(address)  # ValueError for anything header-unsafe
    unsubscribe_token = sign_token(secret, UNSUBSCRIBE, address)
    days = tokens.CONFIRM_MAX_AGE.days
    context = {
        "kind": kind,
        "site_title": config.site.title,
        "site_url": config.site.base_url,
        "address": address,
        "days": days,
        "confirm_url": confirm_url(
            config, tokens.sign_expiring(secret, _confirm_purpose(edition), address, now), edition
        ),
        "preferences_url": preferences_url(config, unsubscribe_token),
        "unsubscribe_url": unsubscribe_url(config, unsubscribe_token),
        "edition_ko": EDITION_NAMES[edition.value][0],
        "edition_en": EDITION_NAMES[edition.value][1],
    }
    env = environment(config)
    text = env.get_template("email/confirm.txt").render(context)
    html = env.get_template("email/confirm.html").render(context)
    title = one_line(config.site.title)
    subjects = {
        "confirm": f"[{title}] 구독 확인 · Confirm your subscription",
        "already": f"[{title}] 이미 구독 중입니다 · You are already subscribed",
    }
    message = EmailMessage()
    message["From"] = config.email.from_
    message["To"] = checked.display if checked.smtputf8 else checked.envelope
    message["Subject"] = subjects[kind]
    message["Date"] = format_datetime(now.astimezone(config.site.tz))
    message["Message-ID"] = make_msgid(kind, domain=config.email.sender_domain)
    if config.email.reply_to:
        message["Reply-To"] = config.email.reply_to
    # RFC 3834: an automatic message; auto-responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = "ko, en"
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    chosen = policy.SMTPUTF8 if checked.smtputf8 else policy.SMTP
    return checked.envelope, message.as_bytes(policy=chosen)


def _confirm_purpose(edition: Edition) -> str:
    # The edition is part of what is signed: the link cannot be edited to another.
    return f"{tokens.CONFIRM}:{edition.value}"


# --- the subscription logic (blocking; runs in the thread pool) -------------------


class DeliveryProblem(Exception):
    """The confirmation email could not be handed to the transport."""


@dataclass
class Subscriptions:
    """Store changes and confirmation mail, independent of HTTP."""

    config: Config
    secret: bytes
    subscribers: Subscribers
    clock: Callable[[], dt.datetime]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, address: str, edition: Edition) -> None:
        """A sign-up: pending + confirmation, or a note to an active subscriber."""
        with self._lock:
            kind = self._prepare(address, edition)
        self._send(address, edition, kind)

    def _prepare(self, address: str, edition: Edition) -> str:
        current = self.subscribers.get(address)
        if current is None:
            self.subscribers.add(address, edition, state=SubscriberState.PENDING)
            return "confirm"
        if current.state is SubscriberState.ACTIVE:
            return "already"  # no change: only the owner's click may change anything
        if current.state is not SubscriberState.PENDING:
            # Unsubscribed or bounced: back through double opt-in.
            self.subscribers.add(address, edition, state=SubscriberState.PENDING, reactivate=True)
        return "confirm"

    def _send(self, address: str, edition: Edition, kind: str) -> None:
        recipient, data = build_confirmation(
            self.config, self.secret, address, edition, kind, self.clock()
        )
        transport = self._transport()
        try:
            transport.open()
            transport.send(self.config.email.sender_address, recipient, data)
        except (SendFailure, NewsletterError) as exc:
            log.warning("confirmation email to %s not sent: %s", address, exc)
            raise DeliveryProblem(str(exc)) from None
        finally:
            transport.close()

    def _transport(self) -> Transport:
        if self.config.email.transport == "file":
            return FileTransport(self.config.paths.outbox / CONFIRMATIONS_FOLDER)
        return make_transport(self.config, self.clock().date())

    def confirm(self, address: str, edition: Edition) -> str:
        """'confirmed' (now or before) or 'stale' (left since the link was sent)."""
        with self._lock:
            current = self.subscribers.get(address)
            if current is None or current.state in (
                SubscriberState.UNSUBSCRIBED,
                SubscriberState.BOUNCED,
            ):
                return "stale"
            if current.state is SubscriberState.PENDING:
                self.subscribers.set_edition(address, edition)
                self.subscribers.set_state(address, SubscriberState.ACTIVE)
            return "confirmed"

    def unsubscribe(self, address: str) -> None:
        with self._lock:
            current = self.subscribers.get(address)
            if current is not None and current.state is not SubscriberState.UNSUBSCRIBED:
                self.subscribers.remove(address)

    def edition_of(self, address: str) -> Edition | None:
        """The edition of an active subscriber; None for anyone else."""
        with self._lock:
            current = self.subscribers.get(address)
        if current is None or current.state is not SubscriberState.ACTIVE:
            return None
        return current.edition

    def change_edition(self, address: str, edition: Edition) -> bool:
        """Set the edition of an active subscriber; False if not subscribed."""
        with self._lock:
            current = self.subscribers.get(address)
            if current is None or current.state is not SubscriberState.ACTIVE:
                return False
            self.subscribers.set_edition(address, edition)
            return True


# --- pages ------------------------------------------------------------------------


class Pages:
    """Renders the bilingual pages; every response gets the strict headers."""

    def __init__(self, config: Config, secret: bytes) -> None:
        self.config = config
        self.secret = secret
        self.env = environment(config)
        self.secure_cookie = str(config.server.public_url).startswith("https://")

    def _base(self) -> dict[str, Any]:
        return {
            "site_title": self.config.site.title,
            "site_url": self.config.site.base_url,
            "editions": [e.value for e in self.config.editions],
            "edition_names": EDITION_NAMES,
            "days": tokens.CONFIRM_MAX_AGE.days,
        }

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(f"web/{template}").render(self._base() | context)
        # Every header here too: the 500 page is sent outside the middleware.
        headers = security_headers(self.config) | {"Cache-Control": "no-store"}
        return HTMLResponse(html, status_code=status, headers=headers)

    def message(self, kind: str, **values: str) -> HTMLResponse:
        """A page that only says something (success, or a friendly error)."""
        status, link = MESSAGES[kind]
        values = {"days": str(tokens.CONFIRM_MAX_AGE.days), **values}
        return self.render("message.html", status, kind=kind, values=values, link=link)

    def form(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A page with a form: CSRF token in the form, its nonce in a cookie."""
        nonce = request.cookies.get(CSRF_COOKIE)
        fresh = not tokens.well_formed(nonce)
        if fresh:
            nonce = tokens.new_csrf_nonce()
        assert nonce is not None
        response = self.render(
            template, status, csrf=tokens.csrf_token(self.secret, nonce), **context
        )
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                httponly=True,
                secure=self.secure_cookie,
                samesite="lax",
                path="/",
            )
        return response

    def csrf_ok(self, request: Request, form: Any) -> bool:
        token = form.get("csrf")
        return tokens.csrf_valid(
            self.secret,
            request.cookies.get(CSRF_COOKIE),
            token if isinstance(token, str) else None,
        )


def security_headers(config: Config) -> dict[str, str]:
    """The headers of every response (pages also add no-store: they hold tokens)."""
    headers = SECURITY_HEADERS | {"Content-Security-Policy": APP_CSP}
    if str(config.server.public_url).startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


# --- middleware (plain ASGI: they also see static files and error pages) ----------


class SecurityHeaders:
    """Adds the security headers to every response that does not set them."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """413 for request bodies over the limit, declared or streamed (chunked).

    The body (at most the limit) is read before the app runs and replayed to it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, too_large: Callable[[], Response]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.too_large()(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self.too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then wait for the disconnect as usual

    return replay


class AccessLog:
    """One log line per request, without the query string: links carry tokens."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            client = (scope.get("client") or ("-", 0))[0]
            log.info(
                "%s %s %s %d %.0fms",
                client,
                scope["method"],
                scope["path"],
                status or 500,
                (time.monotonic() - start) * 1000,
            )


class PublicFiles:
    """paths.public (archive pages, feeds) with the CSP its inline <style> needs."""

    def __init__(self, directory: Path) -> None:
        self.files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = STATIC_CSP
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
) -> Starlette:
    """The ASGI app; NewsletterError at once without $NEWSLETTER_SECRET or a database."""
    secret = config.secret(required=True)
    assert secret is not None
    limits = limits or Limits()
    db = Database.open(config)
    config.paths.public.mkdir(parents=True, exist_ok=True)
    service = Subscriptions(config, secret, Subscribers(db), clock)
    pages = Pages(config, secret)
    per_ip = SlidingWindow(limits.per_ip, limits.window_seconds)
    per_address = SlidingWindow(limits.per_address, limits.window_seconds)
    handlers = _Handlers(config, service, pages, per_ip, per_address)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        db.close()

    routes = [
        Route("/subscribe", handlers.subscribe_form, methods=["GET"]),
        Route("/subscribe", handlers.subscribe, methods=["POST"]),
        Route("/confirm", handlers.confirm, methods=["GET"]),
        Route("/unsubscribe", handlers.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe", handlers.unsubscribe, methods=["POST"]),
        Route("/preferences", handlers.preferences_page, methods=["GET"]),
        Route("/preferences", handlers.save_preferences, methods=["POST"]),
        Route("/_web/style.css", handlers.stylesheet, methods=["GET"]),
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
    per_ip: SlidingWindow
    per_address: SlidingWindow

    @property
    def secret(self) -> bytes:
        return self.service.secret

    # -- sign-up --

    async def subscribe_form(self, request: Request) -> Response:
        return self.pages.form(request, "subscribe.html", email="", edition=None, error=None)

    async def subscribe(self, request: Request) -> Response:
        form = await _form(request)
        if not self.pages.csrf_ok(request, form):
            return self.pages.message("csrf")
        email = _field(form, "email")
        edition = _edition(_field(form, "edition"), self.config)
        address = _usable_address(email)
        if address is None or edition is None:
            return self._form_error(request, email, edition, address is None)
        ip = _client_ip(request)
        if self.per_ip.full(ip) or self.per_address.full(address.lower()):
            log.warning("sign-up rate limit reached (ip %s)", ip)
            wait = max(self.per_ip.retry_after(ip), self.per_address.retry_after(address.lower()))
            response = self.pages.message("rate")
            response.headers["Retry-After"] = str(wait)
            return response
        self.per_ip.add(ip)
        self.per_address.add(address.lower())
        try:
            await run_in_threadpool(self.service.request, address, edition)
        except DeliveryProblem:
            return self.pages.message("unavailable")
        return self.pages.message("sent", address=address)

    def _form_error(
        self, request: Request, email: str, edition: Edition | None, bad_email: bool
    ) -> Response:
        error = (
            ("올바른 이메일 주소를 입력해 주세요.", "Please enter a valid email address.")
            if bad_email
            else ("받을 판을 골라 주세요.", "Please choose an edition.")
        )
        return self.pages.form(
            request,
            "subscribe.html",
            400,
            email=email[:320],
            edition=edition.value if edition else None,
            error={"ko": error[0], "en": error[1], "field": "email" if bad_email else "edition"},
        )

    async def confirm(self, request: Request) -> Response:
        edition = _edition(request.query_params.get("edition", ""), self.config)
        if edition is None:
            return self.pages.message("bad_link")
        try:
            address = tokens.verify_expiring(
                self.secret,
                _confirm_purpose(edition),
                request.query_params.get("token", ""),
                self.service.clock(),
            )
        except tokens.ExpiredToken:
            return self.pages.message("expired")
        except tokens.InvalidToken:
            return self.pages.message("bad_link")
        outcome = await run_in_threadpool(self.service.confirm, address, edition)
        if outcome == "stale":
            return self.pages.message("stale")
        return self.pages.message("confirmed", address=address, **_edition_texts(edition))

    # -- unsubscribe --

    def _unsubscribe_address(self, request: Request) -> str | None:
        return tokens.verify_address(self.secret, UNSUBSCRIBE, request.query_params.get("token"))

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
        """RFC 8058 one-click (the signed token is the authority) or the page's button."""
        address = self._unsubscribe_address(request)
        form = await _form(request)
        if address is None:
            return self.pages.message("bad_link")
        one_click = _field(form, "List-Unsubscribe") == "One-Click"
        if not one_click and not self.pages.csrf_ok(request, form):
            return self.pages.message("csrf")
        await run_in_threadpool(self.service.unsubscribe, address)
        log.info("unsubscribed %s (%s)", address, "one-click" if one_click else "web page")
        # 200 and no redirect: mail providers do not follow one.
        return self.pages.message("unsubscribed", address=address)

    # -- preferences --

    async def preferences_page(self, request: Request) -> Response:
        address = self._unsubscribe_address(request)
        if address is None:
            return self.pages.message("bad_link")
        current = await run_in_threadpool(self.service.edition_of, address)
        if current is None:
            return self.pages.message("not_subscribed", address=address)
        return self.pages.form(
            request,
            "preferences.html",
            address=address,
            token=request.query_params["token"],
            current=current.value,
        )

    async def save_preferences(self, request: Request) -> Response:
        address = self._unsubscribe_address(request)
        form = await _form(request)
        if address is None:
            return self.pages.message("bad_link")
        if not self.pages.csrf_ok(request, form):
            return self.pages.message("csrf")
        edition = _edition(_field(form, "edition"), self.config)
        if edition is None:
            return self.pages.message("bad_request")
        if not await run_in_threadpool(self.service.change_edition, address, edition):
            return self.pages.message("not_subscribed", address=address)
        return self.pages.message("saved", address=address, **_edition_texts(edition))

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
        log.error("500 on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return self.pages.message("error")


async def _form(request: Request) -> Any:
    """The form fields (no files; a handful of fields is all we ever need)."""
    return await request.form(max_files=0, max_fields=20)


def _usable_address(email: str) -> str | None:
    """The normalised address, if it is one we can also put in a header safely."""
    if not email or len(email) > 320:
        return None
    try:
        address = normalize_email(email)
        check_address(address)
    except (NewsletterError, ValueError):
        return None
    return address


def _field(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _edition(value: str, config: Config) -> Edition | None:
    try:
        edition = Edition(value)
    except ValueError:
        return None
    return edition if edition in config.editions else None


def _edition_texts(edition: Edition) -> dict[str, str]:
    ko, en = EDITION_NAMES[edition.value]
    return {"edition_ko": ko, "edition_en": en}


# --- running it -----------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A bound socket, or a NewsletterError that says what to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise NewsletterError(
            f"cannot listen on {host}: {exc.strerror}",
            hint="use an IP address or host name of this machine in --host or server.host",
        ) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise NewsletterError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another port with --port (or server.port), or stop what uses it",
        ) from None
    sock.set_inheritable(True)
    return sock


def _share_log_handlers() -> bool:
    """Send uvicorn's own lines through the CLI's log handler: one format, one stream."""
    handlers = logging.getLogger("newsletter").handlers
    if not handlers:
        return False  # a library caller without logging set up: uvicorn's defaults
    uvicorn_log = logging.getLogger("uvicorn")
    uvicorn_log.handlers[:] = handlers
    uvicorn_log.setLevel(logging.INFO)
    uvicorn_log.propagate = False
    return True


def serve(
    config: Config,
    host: str | None = None,
    port: int | None = None,
) -> None:
    """Run the web service until SIGINT/SIGTERM (one process: the rate limits live in it)."""
    import uvicorn

    app = create_app(config)  # fails fast: secret, database
    host = host or config.server.host
    port = port or config.server.port
    sock = _listen(host, port)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            proxy_headers=True,
            # None: $FORWARDED_ALLOW_IPS, else the local host only (a proxy on this machine).
            forwarded_allow_ips=None,
            server_header=False,
            access_log=False,  # AccessLog logs without query strings (tokens)
            timeout_graceful_shutdown=5,
            log_level="info",
            log_config=None if _share_log_handlers() else uvicorn.config.LOGGING_CONFIG,
        )
    )
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving the subscription service on http://%s:%d/ (public URL %s; site files from %s)",
        shown,
        port,
        config.server.public_url,
        config.paths.public,
    )
    with _stop_is_a_normal_exit():
        server.run(sockets=[sock])
    log.info("stopped")


@contextlib.contextmanager
def _stop_is_a_normal_exit() -> Iterator[None]:
    """Exit status 0 after SIGTERM/SIGINT, like `newsletter run`.

    uvicorn shuts down gracefully on these signals, then re-raises the signal to
    the handler that was there before it; a no-op one lets serve() return.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
