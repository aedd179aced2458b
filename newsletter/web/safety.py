"""The HTTP safety layers: CSRF, security headers, body limit, rate limits, access log.

The middleware are plain ASGI (not Starlette's BaseHTTPMiddleware), so they
also see the static files and the error pages.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter import tokens
from newsletter.logs import printable

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
# Seconds a connection has to send each request whole (headers and body), from
# connecting or from the previous response (`web.guard`).
REQUEST_TIMEOUT_SECONDS = 10.0
# Open connections at most (fewer if the descriptor limit is lower): one more
# closes the connection that has waited longest for its request.
MAX_CONNECTIONS = 1000

CSRF_COOKIE = "nl_csrf"

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


@dataclass(frozen=True)
class Limits:
    """Abuse bounds; the defaults are the module constants."""

    per_ip: int = SIGNUPS_PER_IP_PER_HOUR
    per_address: int = SIGNUPS_PER_ADDRESS_PER_HOUR
    window_seconds: float = RATE_WINDOW_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES
    request_timeout: float = REQUEST_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS


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


# --- CSRF ------------------------------------------------------------------------


class Csrf:
    """Signed double-submit CSRF protection (`tokens.csrf_token`).

    A random nonce lives in an HttpOnly, SameSite=Lax cookie; each form carries
    the nonce signed with the secret, and a POST is accepted only if the two match.
    """

    def __init__(self, secret: bytes, secure_cookie: bool) -> None:
        self.secret = secret
        self.secure_cookie = secure_cookie

    def nonce(self, request: Request) -> tuple[str, bool]:
        """(this browser's nonce, whether it is new and must be set as its cookie)."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if nonce is not None and tokens.well_formed(nonce):
            return nonce, False
        return tokens.new_csrf_nonce(), True

    def form_token(self, nonce: str) -> str:
        return tokens.csrf_token(self.secret, nonce)

    def set_cookie(self, response: Response, nonce: str) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            nonce,
            httponly=True,
            secure=self.secure_cookie,
            samesite="lax",
            path="/",
        )

    def ok(self, request: Request, form: Any) -> bool:
        """Whether the form's token goes with this browser's cookie."""
        token = form.get("csrf")
        return tokens.csrf_valid(
            self.secret,
            request.cookies.get(CSRF_COOKIE),
            token if isinstance(token, str) else None,
        )


# --- headers ---------------------------------------------------------------------


def security_headers(config: Config) -> dict[str, str]:
    """The headers of every response (pages also add no-store: they hold tokens)."""
    headers = SECURITY_HEADERS | {"Content-Security-Policy": APP_CSP}
    if str(config.server.public_url).startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


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


# --- body limit ------------------------------------------------------------------


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


# --- access log ------------------------------------------------------------------


class AccessLog:
    """One log line per request, without the query string: links carry tokens.

    The path arrives percent-decoded: every value is `logs.printable`, so a
    %0d%0a cannot forge a line nor %1b drive the terminal that shows the log.
    """

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
                printable(str(client)),
                printable(scope["method"]),
                printable(scope["path"]),
                status or 500,
                (time.monotonic() - start) * 1000,
            )
