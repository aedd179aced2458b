"""Provider webhooks: bounces and complaints reported over HTTPS, verified before use.

No web framework here: each endpoint is `handle(body, headers) -> Outcome`
(`web/webhooks_routes.py` adapts them to Starlette). A call that is unsigned,
badly signed, stale or replayed raises `Refused` (HTTP 403, logged); a body
that is not what the provider sends raises `Invalid` (400).

- **Amazon SES through SNS** (`POST /webhooks/ses`): the SNS message signature
  is verified (`sns.py`, as AWS documents it). The topic must be one of
  `bounces.ses_topic_arns`
  (anyone can sign SNS messages with a topic of their own). A
  SubscriptionConfirmation is confirmed by fetching its SubscribeURL (same host
  rule). Bounce notifications: Permanent is hard, Transient and Undetermined
  soft; Complaint notifications are complaints (SES's notification and event
  publishing formats).
- **Mailgun** (`POST /webhooks/mailgun`): HMAC-SHA256 of timestamp + token with
  the webhook signing key (`bounces.mailgun_signing_key_env`), compared in
  constant time; the timestamp must be within `REPLAY_WINDOW` of now and a
  token is accepted once. Events failed (permanent: hard, temporary: soft),
  complained, unsubscribed.
- **Generic JSON** (`POST /webhooks/bounces`): `Authorization: Bearer SECRET`
  (`bounces.webhook_secret_env`); the body is one event or {"events": [...]},
  each {"type": "hard_bounce" | "soft_bounce" | "complaint" | "unsubscribe",
  "email": ..., "id": ..., optional "status", "diagnostic", "issue_date",
  "edition"}.

Every event goes through `policy.record`, once per delivery and kind (or per
provider event id when the delivery is unknown): retries and replays count once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from newsletter.bounces.sns import Certificates, MalformedMessage, SignatureError, verify_sns
from newsletter.errors import NewsletterError
from newsletter.model import Edition, parse_issue_id
from newsletter.store.bounces import BounceEvent, EventKind, status_of

if TYPE_CHECKING:
    from newsletter.bounces.classify import Classifier
    from newsletter.config import Config
    from newsletter.store import Store

log = logging.getLogger("newsletter.web")

# Mailgun: how old (or early) a signed timestamp may be.
REPLAY_WINDOW = 15 * 60


class Refused(Exception):
    """Not from who it claims to be (HTTP 403)."""


class Invalid(Exception):
    """Signed or not, not a body this endpoint understands (HTTP 400)."""


@dataclass(frozen=True)
class Outcome:
    """What a call did: events recorded (new ones) and a note for the reply and the log."""

    recorded: int = 0
    duplicates: int = 0
    note: str = ""


@dataclass(frozen=True)
class Report:
    """One event a provider reported, before the delivery is looked up."""

    kind: EventKind
    email: str
    provider_id: str
    status: str = ""
    diagnostic: str = ""
    clues: tuple[str, ...] = ()  # envelope sender, Message-IDs: to find the delivery
    date: dt.date | None = None
    edition: Edition | None = None


# --- SES through SNS ------------------------------------------------------------------


class SesEndpoint:
    """Amazon SES notifications through an SNS HTTPS subscription."""

    source = "ses"

    def __init__(self, topic_arns: tuple[str, ...], certificates: Certificates) -> None:
        self.topic_arns = frozenset(topic_arns)
        self.certificates = certificates

    def reports(self, body: bytes, headers: Mapping[str, str]) -> tuple[list[Report], str]:
        """(reports, note) for one call; Refused or Invalid as the module says."""
        message = _json(body)
        if not isinstance(message, dict):
            raise Invalid("an SNS message is a JSON object")
        topic = str(message.get("TopicArn", ""))
        if topic not in self.topic_arns:
            raise Refused(f"topic {topic!r} is not in bounces.ses_topic_arns")
        try:
            verify_sns(message, self.certificates)
            kind = message["Type"]
            if kind == "SubscriptionConfirmation":
                self.certificates.get(str(message.get("SubscribeURL", "")))
        except SignatureError as exc:
            raise Refused(str(exc)) from None
        except MalformedMessage as exc:
            raise Invalid(str(exc)) from None
        if kind == "SubscriptionConfirmation":
            log.info("confirmed the SNS subscription to %s", topic)
            return [], f"subscription to {topic} confirmed"
        if kind == "UnsubscribeConfirmation":
            log.warning("SNS: the subscription to %s was removed", topic)
            return [], "unsubscribe confirmation noted"
        return ses_reports(_json(str(message.get("Message", "")).encode())), "notification"


def ses_reports(notification: Any) -> list[Report]:
    """Reports in an SES notification (notificationType) or event (eventType)."""
    if not isinstance(notification, dict):
        raise Invalid("the SES notification is not a JSON object")
    what = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    clues = [str(mail.get("source", "")), str(mail.get("messageId", ""))]
    clues += [str(h.get("value", "")) for h in mail.get("headers") or [] if isinstance(h, dict)]
    common = mail.get("commonHeaders") or {}
    clues.append(str(common.get("messageId", "")))
    out: list[Report] = []
    if what == "Bounce":
        bounce = notification.get("bounce") or {}
        kind = EventKind.HARD if bounce.get("bounceType") == "Permanent" else EventKind.SOFT
        subtype = f"{bounce.get('bounceType')}/{bounce.get('bounceSubType')}"
        for each in bounce.get("bouncedRecipients") or []:
            diagnostic = str(each.get("diagnosticCode") or subtype)
            out.append(
                Report(
                    kind,
                    str(each.get("emailAddress", "")),
                    str(bounce.get("feedbackId", "")),
                    status=str(each.get("status") or status_of(diagnostic)),
                    diagnostic=re.sub(r"^\s*smtp\s*;\s*", "", diagnostic),
                    clues=tuple(clues),
                )
            )
    elif what == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        if feedback != "not-spam":
            for each in complaint.get("complainedRecipients") or []:
                out.append(
                    Report(
                        EventKind.COMPLAINT,
                        str(each.get("emailAddress", "")),
                        str(complaint.get("feedbackId", "")),
                        diagnostic=f"Feedback-Type: {feedback}",
                        clues=tuple(clues),
                    )
                )
    return out


# --- Mailgun -----------------------------------------------------------------------------


class MailgunEndpoint:
    """Mailgun's webhooks, signed with the webhook signing key."""

    source = "mailgun"

    def __init__(self, signing_key: str, clock: Callable[[], float] = time.time) -> None:
        self.key = signing_key.encode("utf-8")
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def reports(self, body: bytes, headers: Mapping[str, str]) -> tuple[list[Report], str]:
        """(reports, the event name) of one signed call; Refused or Invalid otherwise."""
        payload = _json(body)
        signature = payload.get("signature") if isinstance(payload, dict) else None
        if not isinstance(signature, dict):
            raise Refused("no signature")
        self.verify(
            str(signature.get("timestamp", "")),
            str(signature.get("token", "")),
            str(signature.get("signature", "")),
        )
        data = payload.get("event-data")
        if not isinstance(data, dict):
            raise Invalid("no event-data")
        return mailgun_reports(data), str(data.get("event", ""))

    def verify(self, timestamp: str, token: str, signature: str) -> None:
        """Refused unless signed with our key, recent, and not seen before."""
        expected = hmac.new(self.key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not token or not hmac.compare_digest(expected, signature.lower()):
            raise Refused("bad Mailgun signature")
        now = self.clock()
        if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW:
            raise Refused("stale Mailgun timestamp (outside the replay window)")
        with self._lock:
            for old in [t for t, at in self._seen.items() if now - at > 2 * REPLAY_WINDOW]:
                del self._seen[old]
            if token in self._seen:
                raise Refused("replayed Mailgun token")
            self._seen[token] = now


def mailgun_reports(data: Mapping[str, Any]) -> list[Report]:
    """The report in one Mailgun event (none for the events we do not act on)."""
    event = data.get("event")
    status_info = data.get("delivery-status") or {}
    message = data.get("message") or {}
    headers = message.get("headers") or {}
    envelope = data.get("envelope") or {}
    clues = (str(envelope.get("sender", "")), str(headers.get("message-id", "")))
    if event == "failed":
        kind = EventKind.HARD if data.get("severity") == "permanent" else EventKind.SOFT
        diagnostic = str(status_info.get("message") or status_info.get("description") or "")
        status = str(status_info.get("enhanced-code") or status_info.get("code") or "")
    elif event == "complained":
        kind, diagnostic, status = EventKind.COMPLAINT, "Mailgun complaint", ""
    elif event == "unsubscribed":
        kind, diagnostic, status = EventKind.UNSUBSCRIBE, "Mailgun unsubscribe", ""
    else:
        return []
    return [
        Report(
            kind,
            str(data.get("recipient", "")),
            str(data.get("id", "")),
            status=status,
            diagnostic=diagnostic,
            clues=clues,
        )
    ]


# --- generic -------------------------------------------------------------------------------


class GenericEndpoint:
    """A JSON endpoint for other providers or scripts, behind a shared secret."""

    source = "webhook"

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode("utf-8")

    def reports(self, body: bytes, headers: Mapping[str, str]) -> tuple[list[Report], str]:
        """(reports, "events") of one call with the right bearer secret (headers lower-cased)."""
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8"), self.secret
        ):
            raise Refused("missing or wrong bearer secret")
        payload = _json(body)
        items = payload.get("events") if isinstance(payload, dict) else None
        items = items if isinstance(items, list) else [payload]
        return [self._report(item, number) for number, item in enumerate(items)], "events"

    def _report(self, item: Any, number: int) -> Report:
        if not isinstance(item, dict):
            raise Invalid(f"event {number}: not a JSON object")
        try:
            kind = EventKind(str(item.get("type")))
        except ValueError:
            raise Invalid(
                f"event {number}: type must be hard_bounce, soft_bounce, complaint or unsubscribe"
            ) from None
        if kind is EventKind.REACTIVATED or not isinstance(item.get("email"), str):
            raise Invalid(f"event {number}: needs a type and an email")
        try:
            date = parse_issue_id(item["issue_date"]) if item.get("issue_date") else None
            edition = Edition(item["edition"]) if item.get("edition") else None
        except (ValueError, TypeError):
            raise Invalid(
                f"event {number}: issue_date is YYYY-MM-DD (or a week, YYYY-Www), "
                "edition ko/en/both"
            ) from None
        canonical = json.dumps(item, sort_keys=True, ensure_ascii=False)
        return Report(
            kind,
            item["email"],
            str(item.get("id") or hashlib.sha256(canonical.encode()).hexdigest()),
            status=str(item.get("status", ""))[:32],
            diagnostic=str(item.get("diagnostic", "")),
            date=date,
            edition=edition,
        )


# --- recording -------------------------------------------------------------------------------


@dataclass
class Webhooks:
    """The configured endpoints over one store: `handle(name, body, headers)`.

    Blocking (database, certificate fetches): the web app calls it from its
    thread pool; a lock keeps it one database user at a time.
    """

    config: Config
    store: Store
    classifier: Classifier
    endpoints: dict[str, Any]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, name: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """Verify and record one call; Refused (403) or Invalid (400) otherwise."""
        from newsletter.bounces.policy import record
        from newsletter.store.subscribers import normalize_email

        endpoint = self.endpoints[name]
        reports, note = endpoint.reports(body, {k.lower(): v for k, v in headers.items()})
        recorded = duplicates = 0
        with self._lock:
            for report in reports:
                try:
                    address = normalize_email(report.email)
                except NewsletterError:
                    log.warning("%s webhook: %r is not an address; skipped", name, report.email)
                    continue
                date, edition = report.date, report.edition
                if date is None:
                    date, edition = self.classifier.delivery_of(address, list(report.clues))
                ref = (
                    f"{report.kind}|{date}|{edition}|{address.lower()}"
                    if date is not None and edition is not None
                    else f"{endpoint.source}|{report.provider_id}|{report.kind}|{address.lower()}"
                )
                event = BounceEvent(
                    kind=report.kind,
                    email=address,
                    source=endpoint.source,
                    ref=ref,
                    issue_date=date,
                    edition=edition,
                    status=report.status or status_of(report.diagnostic),
                    diagnostic=report.diagnostic,
                )
                done = record(self.store, event, self.config.email.bounce_limit)
                duplicates += done.duplicate
                recorded += not done.duplicate
        return Outcome(recorded, duplicates, note)


def make_webhooks(
    config: Config, store: Store, certificates: Certificates | None = None
) -> Webhooks | None:
    """The endpoints the config turns on (None if none). NewsletterError if a secret's
    environment variable is missing; `certificates` replaces SNS's (tests only)."""
    from newsletter.bounces.process import classifier_for

    bounces = config.bounces
    endpoints: dict[str, Any] = {}
    if bounces.ses_topic_arns:
        endpoints["ses"] = SesEndpoint(bounces.ses_topic_arns, certificates or Certificates())
    key = _long_enough(
        "bounces.mailgun_signing_key_env",
        bounces.mailgun_signing_key_env,
        bounces.mailgun_signing_key(),
    )
    if key:
        endpoints["mailgun"] = MailgunEndpoint(key)
    secret = _long_enough(
        "bounces.webhook_secret_env", bounces.webhook_secret_env, bounces.webhook_secret()
    )
    if secret:
        endpoints["bounces"] = GenericEndpoint(secret)
    if not endpoints:
        return None
    return Webhooks(config, store, classifier_for(config, store), endpoints)


def _long_enough(key: str, name: str | None, secret: str | None) -> str | None:
    """The secret in $name (named by config `key`), if long enough (`config.check_secret`)."""
    from newsletter.config import check_secret

    if secret is None or name is None:
        return None
    return check_secret(name, secret, f"the secret that {key} names (${name})")


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the body is not JSON") from None
