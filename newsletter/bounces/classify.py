"""What a message in the bounce mailbox is: bounce, complaint, unsubscribe, auto-reply, or none of ours.

`Classifier.classify(raw_bytes)` returns a `Verdict`. It acts only on what it
can tie to a delivery of ours by a SIGNED token, so a forged report cannot
unsubscribe or bounce anyone:

- the VERP return address (`verp.py`) anywhere in the message: in the To: or
  Delivered-To: of a DSN or an auto-reply, or in the Return-Path of the
  returned original (a feedback report);
- else the unsubscribe token of the returned original's List-Unsubscribe
  header (it survives the address redaction some feedback loops apply); the
  issue and edition are then those of our Message-ID in the returned headers.

Kinds, in the order they are tried:

1. RFC 3464 delivery status notification (multipart/report with a
   message/delivery-status part): Action failed with status 5.x.x is a hard
   bounce, 4.x.x a soft one (RFC 3463 classes), Action delayed is soft, and
   delivered/relayed/expanded is a notice (recognised, nothing to count).
2. RFC 5965 feedback report (message/feedback-report): Feedback-Type abuse,
   fraud, virus or other is a complaint; not-spam and auth-failure are not
   about the subscriber and are left alone.
3. A bounce in a non-standard format (old Exim, Microsoft, qmail, ...): the
   detectors of GNU Mailman's flufl.bounce say temporary or permanent.
4. A mailto: unsubscribe request: the List-Unsubscribe mailto's signed token
   in the Subject.
5. An auto-reply (RFC 3834 Auto-Submitted, X-Autoreply, Precedence:
   auto_reply, vacation subjects): ignored, never counted.

Anything else is `UNKNOWN` and must be left exactly where it is.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.message
import email.parser
import email.utils
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from newsletter.bounces.verp import DeliveryRef, Verp
from newsletter.headers import message_id
from newsletter.model import Edition, IssueId
from newsletter.store.bounces import EventKind, status_of
from newsletter.tokens import UNSUBSCRIBE, verify_address


class Kind(StrEnum):
    """What a message is. The first four are events; the next two are recognised
    and need nothing done; UNKNOWN is not ours to touch."""

    HARD = EventKind.HARD.value
    SOFT = EventKind.SOFT.value
    COMPLAINT = EventKind.COMPLAINT.value
    UNSUBSCRIBE = EventKind.UNSUBSCRIBE.value
    AUTO_REPLY = "auto_reply"
    NOTICE = "notice"
    UNKNOWN = "unknown"

    @property
    def event(self) -> EventKind | None:
        """The event this kind records (None: nothing is recorded)."""
        try:
            return EventKind(self.value)
        except ValueError:
            return None


@dataclass(frozen=True)
class Verdict:
    """The classification of one message.

    `email` is the subscriber the signed token names (None for UNKNOWN);
    `date`/`edition` the delivery, when known; `status` the RFC 3463 code;
    `diagnostic` the server's text; `report_id` the message's own Message-ID
    (or a hash of its bytes); `why` a few words for the log.
    """

    kind: Kind
    why: str
    email: str | None = None
    date: IssueId | None = None
    edition: Edition | None = None
    status: str = ""
    diagnostic: str = ""
    report_id: str = ""

    @property
    def acted_on(self) -> bool:
        """Whether the message is recognised (and so moved to `processed`)."""
        return self.kind is not Kind.UNKNOWN

    @property
    def ref(self) -> str:
        """The event's identity: one per delivery and kind when the delivery is
        known (a report that arrives twice, or by two paths, counts once)."""
        key = (self.email or "").lower()
        if self.date is not None and self.edition is not None:
            return f"{self.kind}|{self.date}|{self.edition}|{key}"
        return f"{self.kind}|{self.report_id}|{key}"


class Directory(Protocol):
    """What the classifier asks the store: who a VERP id is, and what was sent to whom."""

    def email_of(self, subscriber_id: int) -> str | None:
        """The address of a subscriber id (None: no such subscriber)."""
        ...

    def deliveries_of(self, email: str) -> list[tuple[IssueId, Edition]]:
        """(issue date, edition) of every delivery to this address."""
        ...


@dataclass(frozen=True)
class _Identity:
    email: str
    date: IssueId | None
    edition: Edition | None
    how: str


# Headers a report's own envelope recipient shows up in (Postfix, Exim, Dovecot, qmail).
_ENVELOPE_HEADERS = (
    "to",
    "cc",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "x-rcpt-to",
    "x-original-recipient",
)
_TOKEN_IN_URL = re.compile(r"unsubscribe(?:\?token=|%20|\+|\s)([A-Za-z0-9_-]+\.[A-Za-z0-9_-]{24})")
_TOKEN_IN_SUBJECT = re.compile(r"\bunsubscribe\b\W{0,3}([A-Za-z0-9_-]+\.[A-Za-z0-9_-]{24})\b", re.I)
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}@[^<>\s]{1,250}>")
_DAEMON = re.compile(
    r"^(mailer-daemon|postmaster|mail-?delivery-?(subsystem|system)?|"
    r"microsoftexchange[0-9a-f]*|bounces?)@",
    re.I,
)
_SMTP_LINE = re.compile(r"^.*\b[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}\b)?.*$", re.M)
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|answer|antwort)|auto:|autoreply|"
    r"out of (?:the )?office|vacation|on leave|away from|abwesenheit|absence|"
    r"automatische antwort|réponse automatique|respuesta automática|"
    r"부재|자동\s*(?:회신|응답)|不在|自动回复|自動回覆)",
    re.I,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status|failure|has failed)|returned mail|failure notice|"
    r"mail delivery failed",
    re.I,
)
_ARF_COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})


class Classifier:
    """Classifies raw messages for one secret (and `email.bounce_address`, if any).

    `sender_domain` is the domain of our Message-IDs; `directory` resolves a
    VERP id to an address and lists an address's deliveries.
    """

    def __init__(
        self, secret: bytes, bounce_address: str | None, sender_domain: str, directory: Directory
    ) -> None:
        self.secret = secret
        self.verp = Verp(secret, bounce_address) if bounce_address else None
        self.sender_domain = sender_domain
        self.directory = directory

    def classify(self, raw: bytes) -> Verdict:
        """The verdict for one message (RFC 5322 bytes). Never raises on bad input:
        a message it cannot make sense of is UNKNOWN."""
        msg = email.message_from_bytes(raw)
        report_id = _report_id(msg, raw)
        texts = list(_texts(msg, raw))
        identity = self._identity(msg, texts)
        dsn = _find_part(msg, "message/delivery-status")
        if dsn is not None:
            return self._dsn(dsn, identity, report_id)
        arf = _find_part(msg, "message/feedback-report")
        if arf is not None:
            return self._arf(arf, identity, report_id)
        subject = _header(msg, "subject")
        if identity is not None and _looks_like_bounce(msg, subject):
            verdict = self._other_bounce(msg, identity, report_id, texts)
            if verdict is not None:
                return verdict
        unsubscribe = self._unsubscribe_request(subject)
        if unsubscribe is not None and not _auto_submitted(msg):
            return _verdict(Kind.UNSUBSCRIBE, "mailto unsubscribe", unsubscribe, report_id)
        if identity is not None and (_auto_submitted(msg) or _AUTO_SUBJECT.search(subject)):
            return _verdict(Kind.AUTO_REPLY, "auto-reply", identity, report_id)
        if identity is None and _looks_like_bounce(msg, subject):
            return Verdict(Kind.UNKNOWN, "a bounce without a token of ours", report_id=report_id)
        return Verdict(Kind.UNKNOWN, "not a report about our mail", report_id=report_id)

    # -- the kinds --

    def _dsn(
        self, part: email.message.Message, identity: _Identity | None, report_id: str
    ) -> Verdict:
        if identity is None:
            return Verdict(Kind.UNKNOWN, "a DSN without a token of ours", report_id=report_id)
        blocks = [b for b in part.get_payload() if isinstance(b, email.message.Message)][1:]
        block = _recipient_block(blocks, identity.email)
        if block is None:
            return Verdict(Kind.UNKNOWN, "a DSN without recipient fields", report_id=report_id)
        action = (block.get("action") or "").strip().lower()
        diagnostic = _unfold(block.get("diagnostic-code") or "")
        diagnostic = re.sub(r"^\s*[\w-]+\s*;\s*", "", diagnostic)  # "smtp; 550 ..."
        status = status_of(block.get("status") or "") or status_of(diagnostic)
        if action in ("delivered", "relayed", "expanded"):
            return _verdict(Kind.NOTICE, f"DSN: {action}", identity, report_id, status)
        if action == "delayed":
            kind = Kind.SOFT
        elif action == "failed":
            code = status[:1] or _smtp_class(diagnostic)
            kind = Kind.SOFT if code == "4" else Kind.HARD
        else:
            return Verdict(Kind.UNKNOWN, f"a DSN with Action {action!r}", report_id=report_id)
        return _verdict(kind, f"DSN: {action}", identity, report_id, status, diagnostic)

    def _arf(
        self, part: email.message.Message, identity: _Identity | None, report_id: str
    ) -> Verdict:
        fields = part.get_payload(0) if part.is_multipart() else None
        if not isinstance(fields, email.message.Message):
            fields = email.parser.HeaderParser().parsestr(str(part.get_payload()))
        feedback = (fields.get("feedback-type") or "").strip().lower()
        if feedback not in _ARF_COMPLAINTS:
            return Verdict(
                Kind.UNKNOWN, f"a feedback report of type {feedback!r}", report_id=report_id
            )
        if identity is None:
            return Verdict(Kind.UNKNOWN, "a complaint without a token of ours", report_id=report_id)
        agent = _unfold(fields.get("user-agent") or "")
        diagnostic = f"Feedback-Type: {feedback}" + (f"; User-Agent: {agent}" if agent else "")
        return _verdict(Kind.COMPLAINT, "ARF report", identity, report_id, "", diagnostic)

    def _other_bounce(
        self,
        msg: email.message.Message,
        identity: _Identity,
        report_id: str,
        texts: list[str],
    ) -> Verdict | None:
        from flufl.bounce import all_failures

        try:
            temporary, permanent = all_failures(msg)
        except Exception:  # a detector choking on odd input: not a bounce we know
            return None
        if not temporary and not permanent:
            return None
        body = "\n".join(texts[1:]) or texts[0]
        line = _SMTP_LINE.search(body)
        diagnostic = line.group(0).strip() if line else ""
        status = status_of(diagnostic)
        kind = Kind.HARD if permanent else Kind.SOFT
        return _verdict(kind, "bounce (non-standard)", identity, report_id, status, diagnostic)

    def _unsubscribe_request(self, subject: str) -> _Identity | None:
        for token in _TOKEN_IN_SUBJECT.findall(subject):
            address = verify_address(self.secret, UNSUBSCRIBE, token)
            if address is not None:
                return _Identity(address, None, None, "token in the subject")
        return None

    # -- who --

    def _identity(self, msg: email.message.Message, texts: list[str]) -> _Identity | None:
        """The delivery the message is about, by a signed token; None if none verifies."""
        if self.verp is not None:
            envelope = " ".join(
                str(value) for name in _ENVELOPE_HEADERS for value in msg.get_all(name) or ()
            )
            for text in (envelope, *texts):
                ref = self.verp.find(text)
                if ref is not None:
                    found = self._from_verp(ref)
                    if found is not None:
                        return found
        for text in texts:
            for token in _TOKEN_IN_URL.findall(text):
                address = verify_address(self.secret, UNSUBSCRIBE, token)
                if address is not None:
                    date, edition = self._delivery_by_message_id(address, texts)
                    return _Identity(address, date, edition, "unsubscribe token")
        return None

    def delivery_of(self, address: str, texts: list[str]) -> tuple[IssueId | None, Edition | None]:
        """The issue and edition of a report about `address` whose sender already
        vouched for it (a verified webhook): by a VERP address of that subscriber in
        `texts` (the envelope sender, headers), else by our Message-ID there."""
        if self.verp is not None:
            for text in texts:
                ref = self.verp.find(text)
                if ref is not None:
                    found = self._from_verp(ref)
                    if found is not None and found.email.lower() == address.lower():
                        return found.date, found.edition
        return self._delivery_by_message_id(address, texts)

    def _from_verp(self, ref: DeliveryRef) -> _Identity | None:
        address = self.directory.email_of(ref.subscriber_id)
        if address is None:
            return None
        return _Identity(address, ref.date, ref.edition, "VERP")

    def _delivery_by_message_id(
        self, address: str, texts: list[str]
    ) -> tuple[IssueId | None, Edition | None]:
        ids = {m for text in texts for m in _MESSAGE_ID.findall(text)}
        if not ids:
            return None, None
        for date, edition in self.directory.deliveries_of(address):
            if message_id(date, edition.value, address, self.sender_domain) in ids:
                return date, edition
        return None, None


# --- helpers -----------------------------------------------------------------------------


def _verdict(
    kind: Kind,
    why: str,
    who: _Identity,
    report_id: str,
    status: str = "",
    diagnostic: str = "",
) -> Verdict:
    return Verdict(
        kind=kind,
        why=f"{why} ({who.how})",
        email=who.email,
        date=who.date,
        edition=who.edition,
        status=status,
        diagnostic=diagnostic,
        report_id=report_id,
    )


def _report_id(msg: email.message.Message, raw: bytes) -> str:
    found = _MESSAGE_ID.search(str(msg.get("message-id") or ""))
    return found.group(0) if found else "sha256:" + hashlib.sha256(raw).hexdigest()


def _texts(msg: email.message.Message, raw: bytes) -> Iterator[str]:
    """The raw message as text, then every decoded leaf part (base64 and
    quoted-printable parts hide tokens from a search of the raw bytes)."""
    yield raw.decode("utf-8", "replace")
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        if str(part.get("content-transfer-encoding", "")).lower() not in (
            "base64",
            "quoted-printable",
        ):
            continue
        try:
            data = part.get_payload(decode=True)
        except Exception:
            continue
        if isinstance(data, bytes):
            yield data.decode(part.get_content_charset() or "utf-8", "replace")


def _find_part(msg: email.message.Message, content_type: str) -> email.message.Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _header(msg: email.message.Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return _unfold(str(email.header.make_header(email.header.decode_header(str(value)))))
    except (UnicodeError, LookupError, email.errors.HeaderParseError):
        return _unfold(str(value))


def _unfold(value: str) -> str:
    return " ".join(str(value).split())


def _addresses(value: str) -> list[str]:
    """The addresses in a DSN recipient field ('rfc822; a@b') or a header."""
    value = value.partition(";")[2] if ";" in value else value
    return [address.lower() for _, address in email.utils.getaddresses([value]) if address]


def _recipient_block(
    blocks: list[email.message.Message], address: str
) -> email.message.Message | None:
    """The per-recipient fields about `address`, else the first failure, delay or block."""
    for block in blocks:
        named = _addresses(block.get("final-recipient") or "")
        named += _addresses(block.get("original-recipient") or "")
        if address.lower() in named:
            return block
    for action in ("failed", "delayed"):
        for block in blocks:
            if (block.get("action") or "").strip().lower() == action:
                return block
    return blocks[0] if blocks else None


def _smtp_class(diagnostic: str) -> str:
    found = re.search(r"\b([245])\d\d\b", diagnostic)
    return found.group(1) if found else ""


def _auto_submitted(msg: email.message.Message) -> bool:
    """RFC 3834 and the common non-standard auto-reply marks."""
    auto = (msg.get("auto-submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(msg.get(name) for name in ("x-autoreply", "x-autorespond", "x-autoresponder")):
        return True
    return (msg.get("precedence") or "").strip().lower() == "auto_reply"


def _looks_like_bounce(msg: email.message.Message, subject: str) -> bool:
    """A null return path or a mailer-daemon sender: what bounces are sent with."""
    sender = email.utils.parseaddr(str(msg.get("from") or ""))[1]
    return (
        str(msg.get("return-path") or "").strip() == "<>"
        or bool(_DAEMON.match(sender))
        or bool(msg.get("x-failed-recipients"))
        or bool(_BOUNCE_SUBJECT.search(subject))
    )
