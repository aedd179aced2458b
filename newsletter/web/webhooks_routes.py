"""The webhook routes of `newsletter serve`: Starlette around `newsletter.bounces.webhooks`.

    POST /webhooks/ses       Amazon SES through an SNS HTTPS subscription
    POST /webhooks/mailgun   Mailgun's signed webhooks
    POST /webhooks/bounces   the generic JSON endpoint (Authorization: Bearer SECRET)

Only the endpoints the config turns on exist. Unsigned or badly signed calls
get 403, malformed ones 400, and both are logged with the client's address;
the verification itself knows nothing of HTTP frameworks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.bounces.sns import Certificates
from newsletter.bounces.webhooks import Invalid, Refused, make_webhooks
from newsletter.store import Store

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.store.database import Database

log = logging.getLogger("newsletter.web")


def webhook_routes(
    config: Config, db: Database, certificates: Certificates | None = None
) -> list[Route]:
    """The routes of the configured webhooks (none if none is configured).

    NewsletterError at once if a secret's environment variable is missing.
    `certificates` replaces where SNS certificates may come from (tests only).
    """
    hooks = make_webhooks(config, Store(db), certificates)
    if hooks is None:
        return []

    def endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def receive(request: Request) -> Response:
            body = await request.body()
            client = request.client.host if request.client else "unknown"
            try:
                outcome = await run_in_threadpool(hooks.handle, name, body, request.headers)
            except Refused as exc:
                log.warning("webhook %s from %s refused: %s", name, client, exc)
                return JSONResponse({"error": "forbidden"}, status_code=403)
            except Invalid as exc:
                log.warning("webhook %s from %s: bad request: %s", name, client, exc)
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(
                {
                    "recorded": outcome.recorded,
                    "duplicates": outcome.duplicates,
                    "note": outcome.note,
                }
            )

        return receive

    return [
        Route(f"/webhooks/{name}", endpoint(name), methods=["POST"]) for name in hooks.endpoints
    ]
