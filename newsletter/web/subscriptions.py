"""Sign-up, confirmation, unsubscribe and edition changes, without HTTP.

The rules of double opt-in, the signed links that carry them and the
confirmation mail; no web framework here, so the CLI or a test can drive it
directly. Every public answer to a sign-up is the same whether or not the
address is known: a confirmation is mailed to a new, pending or departed
address, and an "already subscribed" note to an active one.

Links: a confirmation link carries an expiring token (`tokens.sign_expiring`,
valid `tokens.CONFIRM_MAX_AGE`) that also signs the edition; it opens a page
with one button, and only that button's POST confirms (mail scanners fetch
links). A confirmation link is stale once the subscriber's state changed after
it was issued (they left, or signed up again: only the newest link counts).
The unsubscribe and preferences links carry the never-expiring unsubscribe
token of every email (`tokens.sign_token(secret, tokens.UNSUBSCRIBE, address)`).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Literal

from newsletter import tokens
from newsletter.errors import NewsletterError
from newsletter.headers import check_address, one_line
from newsletter.mail import preferences_url, unsubscribe_url
from newsletter.model import LEFT_STATES, Cadence, Edition, SubscriberState
from newsletter.store.subscribers import Preferences, normalize_email
from newsletter.templating import environment
from newsletter.tokens import UNSUBSCRIBE, sign_token
from newsletter.transports import Transport, make_transport
from newsletter.transports.failures import SendFailure
from newsletter.transports.files import FileTransport
from newsletter.web.choices import choice_texts

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.model import Subscriber
    from newsletter.store.subscribers import Subscribers

log = logging.getLogger("newsletter.web")

# Confirmation emails of the file transport: outbox/confirmations/<address>.eml.
CONFIRMATIONS_FOLDER = "confirmations"


def confirm_url(config: Config, token: str, edition: Edition) -> str:
    """The confirmation link of a sign-up (token from `tokens.sign_expiring`)."""
    return f"{config.server.public_url}confirm?token={token}&edition={edition.value}"


def usable_address(email: str) -> str | None:
    """The normalised address, if it is one we can also put in a header safely."""
    if not email or len(email) > 320:
        return None
    try:
        address = normalize_email(email)
        check_address(address)
    except (NewsletterError, ValueError):
        return None
    return address


def build_confirmation(
    config: Config,
    secret: bytes,
    address: str,
    edition: Edition,
    kind: str,
    now: dt.datetime,
    preferences: Preferences | None = None,
) -> tuple[str, bytes]:
    """(envelope recipient, message bytes) of a confirmation or "already subscribed" mail.

    `kind` is "confirm" or "already". A confirmation says what the sign-up
    chose: edition, cadence (daily; weekly on schedule.weekly_day) and topics
    (`preferences`; None: daily, every paper), in Korean and English.
    ValueError for an address that is not header-safe. One message per
    request: EmailMessage's ~5 ms do not matter here.
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
    } | _chosen_texts(config, edition, preferences)
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
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    # After the content: set_content() drops every Content-* header set before it.
    # RFC 3282; Korean first, then English, as the issue mails say their language.
    message["Content-Language"] = "ko, en"
    chosen = policy.SMTPUTF8 if checked.smtputf8 else policy.SMTP
    return checked.envelope, message.as_bytes(policy=chosen)


def _chosen_texts(
    config: Config, edition: Edition, preferences: Preferences | None
) -> dict[str, str]:
    chosen = preferences or Preferences()
    return choice_texts(
        edition,
        chosen.cadence or Cadence.DAILY,
        chosen.topics or (),
        config.schedule.weekly_day,
    )


def _confirm_purpose(edition: Edition) -> str:
    # The edition is part of what is signed: the link cannot be edited to another.
    return f"{tokens.CONFIRM}:{edition.value}"


class DeliveryProblem(Exception):
    """The confirmation email could not be handed to the transport."""


@dataclass(frozen=True)
class ConfirmLink:
    """A genuine, unexpired confirmation link: its address, the edition it signs,
    and when it was issued (UTC, whole seconds)."""

    address: str
    edition: Edition
    issued: dt.datetime


# What a confirmation link can still do: "pending" (its button confirms),
# "confirmed" (done already: nothing to do), "stale" (superseded or left).
LinkState = Literal["pending", "confirmed", "stale"]


@dataclass
class Subscriptions:
    """Subscriber changes and confirmation mail, independent of HTTP.

    Blocking (database, transport): the web service calls it from its thread
    pool; a lock makes it one database user at a time.
    """

    config: Config
    secret: bytes
    subscribers: Subscribers
    clock: Callable[[], dt.datetime]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the links --

    def confirm_link(self, token: str, edition: Edition) -> ConfirmLink:
        """The confirmation link of this token and edition; reads nothing, changes nothing.

        tokens.ExpiredToken past `tokens.CONFIRM_MAX_AGE`; tokens.InvalidToken
        for anything forged, malformed or made for another edition.
        """
        address = tokens.verify_expiring(
            self.secret, _confirm_purpose(edition), token, self.clock()
        )
        return ConfirmLink(address, edition, tokens.issued_at(token))

    def address_of(self, token: str | None) -> str | None:
        """The address of an unsubscribe/preferences link's token; None if not genuine."""
        return tokens.verify_address(self.secret, UNSUBSCRIBE, token)

    # -- the changes --

    def request(
        self, address: str, edition: Edition, preferences: Preferences | None = None
    ) -> None:
        """A sign-up: pending + confirmation, or a note to an active subscriber.

        `preferences` (cadence, topics) are kept on the pending row; they apply
        once the address is confirmed. The mail goes first and the row is
        written only once the transport took it: DeliveryProblem (the relay
        refused, is down, lacks SMTPUTF8, the outbox cannot be written) leaves
        the database as it was, never a pending row nobody was told about.
        """
        # One time for the state change and the link's issue time: the new link
        # is never older than the change it was sent for.
        at = self.clock()
        with self._lock:
            current = self.subscribers.get(address)
        active = current is not None and current.state is SubscriberState.ACTIVE
        kind = "already" if active else "confirm"
        self._send(address, edition, kind, at, preferences)
        if kind == "confirm":
            with self._lock:
                self._prepare(address, edition, at, preferences)

    def _prepare(
        self, address: str, edition: Edition, at: dt.datetime, preferences: Preferences | None
    ) -> str:
        current = self.subscribers.get(address)
        pending = SubscriberState.PENDING
        if current is None:
            self.subscribers.add(address, edition, state=pending, at=at, preferences=preferences)
            return "confirm"
        if current.state is SubscriberState.ACTIVE:
            return "already"  # no change: only the owner's click may change anything
        if current.state is not pending:
            # Unsubscribed, bounced or complained: back through double opt-in.
            # The links sent before are stale from now on.
            self.subscribers.add(
                address, edition, state=pending, reactivate=True, at=at, preferences=preferences
            )
        elif preferences is not None:
            # Asked again while pending: the newest choice is the one confirmed.
            self.subscribers.set_preferences(address, preferences, at=at)
        return "confirm"

    def _send(
        self,
        address: str,
        edition: Edition,
        kind: str,
        at: dt.datetime,
        preferences: Preferences | None,
    ) -> None:
        recipient, data = build_confirmation(
            self.config, self.secret, address, edition, kind, at, preferences
        )
        transport: Transport | None = None
        try:
            transport = self._transport()
            transport.open()
            transport.send(self.config.email.sender_address, recipient, data)
        except (SendFailure, NewsletterError) as exc:
            reason = exc.reply if isinstance(exc, SendFailure) else exc.message
            log.warning("confirmation email to %s not sent: %s", address, reason)
            raise DeliveryProblem(reason) from None
        finally:
            if transport is not None:
                transport.close()

    def _transport(self) -> Transport:
        if self.config.email.transport == "file":
            return FileTransport(self.config.paths.outbox / CONFIRMATIONS_FOLDER)
        return make_transport(self.config, self.clock().date())

    def link_state(self, link: ConfirmLink) -> LinkState:
        """What the link's button would do now; reads, changes nothing (GET, HEAD)."""
        with self._lock:
            return _link_state(self.subscribers.get(link.address), link)

    def confirm(self, link: ConfirmLink) -> LinkState:
        """Activate a pending subscriber with the link's edition (the button's POST).

        "confirmed" (now or before) or "stale": the address left, or its state
        changed after the link was issued (a newer sign-up: only its link counts).
        """
        with self._lock:
            state = _link_state(self.subscribers.get(link.address), link)
            if state == "pending":
                at = self.clock()
                self.subscribers.set_edition(link.address, link.edition, at)
                self.subscribers.set_state(link.address, SubscriberState.ACTIVE, at)
                return "confirmed"
            return state

    def unsubscribe(self, address: str) -> None:
        """Unsubscribe the address if it is not already (unknown addresses: nothing)."""
        with self._lock:
            current = self.subscribers.get(address)
            # A complaint stays a complaint (reactivating it needs --force).
            if current is not None and current.state not in (
                SubscriberState.UNSUBSCRIBED,
                SubscriberState.COMPLAINED,
            ):
                self.subscribers.remove(address, self.clock())

    def active(self, address: str) -> Subscriber | None:
        """The subscriber if active (edition, cadence, topics); None for anyone else."""
        with self._lock:
            current = self.subscribers.get(address)
        if current is None or current.state is not SubscriberState.ACTIVE:
            return None
        return current

    def edition_of(self, address: str) -> Edition | None:
        """The edition of an active subscriber; None for anyone else."""
        current = self.active(address)
        return current.edition if current else None

    def change_edition(self, address: str, edition: Edition) -> bool:
        """Set the edition of an active subscriber; False if not subscribed."""
        from newsletter.store.subscribers import Preferences

        return self.change(address, edition, Preferences()) is not None

    def change(self, address: str, edition: Edition, preferences: Preferences) -> Subscriber | None:
        """Set edition, cadence and topics of an active subscriber (a new cadence
        applies from the next weekly period: `newsletter.cadence`); None if not
        subscribed."""
        with self._lock:
            current = self.subscribers.get(address)
            if current is None or current.state is not SubscriberState.ACTIVE:
                return None
            return self.subscribers.set_preferences(
                address, preferences, edition=edition, at=self.clock()
            )


def _link_state(current: Subscriber | None, link: ConfirmLink) -> LinkState:
    if current is None or current.state in LEFT_STATES:
        return "stale"
    if current.state is SubscriberState.ACTIVE:
        return "confirmed"
    changed = current.state_changed_at
    if changed is not None and link.issued < changed:
        return "stale"  # issued before the sign-up now pending (or before a departure)
    return "pending"
