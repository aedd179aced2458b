"""The `email:` (with `email.smtp:`) and `bounces:` sections of config.yaml.

Senders, subject templates and their fields, the bounce (VERP) address and
SMTP relay; the bounce mailbox and webhooks. `newsletter.config.Config` holds
them; config.py reports every bad key of the whole file at once.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from email.utils import parseaddr
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from newsletter.config_base import Section, env_secret
from newsletter.model import Edition


class SmtpConfig(Section):
    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    timeout: float = Field(30.0, gt=0)
    connections: int = Field(2, ge=1, le=64)
    rate_limit: float = Field(0, ge=0)
    max_per_connection: int = Field(1000, ge=1)

    def password(self) -> str | None:
        """The SMTP password from the environment variable the config names."""
        return env_secret("email.smtp.password_env", self.password_env)


def _check_mailbox(value: str) -> str:
    _name, address = parseaddr(value)
    if "@" not in address or "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} is not an address like 'ML Papers <papers@example.org>'")
    return value


Mailbox = Annotated[str, AfterValidator(_check_mailbox)]

# {papers} is the count with its noun in the edition's language ("1 paper", "논문 3편").
SUBJECT_FIELDS = ("date", "count", "papers")
# Weekly subjects: {date} is the range of days; {week} the ISO week (2025-W15).
WEEKLY_SUBJECT_FIELDS = (*SUBJECT_FIELDS, "week")

# The longest VERP token `newsletter.bounces.verp` adds to the bounce address's
# local part ('+' and the token); RFC 5321 allows 64 octets in a local part.
VERP_TOKEN_MAX = 45


def _check_bounce_address(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or not value.isascii()
        or re.search(r"[\s<>()+,;:\"]", value)
    ):
        raise ValueError(
            f"{value!r} is not a plain ASCII address without '+', like 'bounces@example.org'"
        )
    if len(local) + VERP_TOKEN_MAX > 64:
        raise ValueError(
            f"the local part {local!r} is too long: with the VERP token it must fit in "
            f"64 characters; use at most {64 - VERP_TOKEN_MAX}"
        )
    return value


DEFAULT_SUBJECTS = {
    # Not "[ML 논문] ...": its only cased letters, "ML", read as an all-caps
    # subject to spam filters (newsletter.mail_checks.shouting).
    "ko": "[ML Papers] {date} · {papers}",
    "en": "[ML Papers] {date} · {papers}",
    "both": "[ML 논문 · Papers] {date} · {count}편",
}
DEFAULT_WEEKLY_SUBJECTS = {
    "ko": "[ML Papers] 주간 · {date} · {papers}",
    "en": "[ML Papers] Weekly · {date} · {papers}",
    "both": "[ML 논문 · Papers] 주간 Weekly · {date} · {count}편",
}


def _template_check(allowed: tuple[str, ...]) -> Callable[[str], str]:
    """A validator of one subject template: ValueError for a field not `allowed`.

    Used per dict value, so pydantic reports every bad template at once, each
    at its own key (`email.subject.ko`).
    """
    braced = [f"{{{name}}}" for name in allowed]
    names = ", ".join(braced[:-1]) + f" and {braced[-1]}"

    def check(template: str) -> str:
        try:
            # Bare names only: '{date.__class__}' or '{count!r}' would reach
            # into Python objects from a config file.
            fields = [
                (name, spec, conversion)
                for _, name, spec, conversion in string.Formatter().parse(template)
                if name is not None
            ]
            bad = [name for name, spec, conv in fields if name not in allowed or conv]
            bad += [f"{name}:{spec}" for name, spec, _ in fields if spec]
            if bad:
                raise ValueError(f"{{{bad[0]}}} is not allowed")
        except ValueError as exc:
            raise ValueError(f"not a valid template ({exc}); only {names} may be used") from None
        return template

    return check


SubjectTemplate = Annotated[str, AfterValidator(_template_check(SUBJECT_FIELDS))]
WeeklySubjectTemplate = Annotated[str, AfterValidator(_template_check(WEEKLY_SUBJECT_FIELDS))]


class EmailConfig(Section):
    transport: Literal["file", "smtp"] = "file"
    from_: Mailbox = Field("ML Papers <papers@example.org>", alias="from")
    reply_to: Mailbox | None = None
    unsubscribe_mailto: str | None = None
    # The envelope sender (Return-Path) of every delivery, with a signed VERP
    # token: bounces+TOKEN@example.org (newsletter/bounces/verp.py).
    bounce_address: Annotated[str, AfterValidator(_check_bounce_address)] | None = None
    subject: dict[Edition, SubjectTemplate] = Field(default_factory=lambda: dict(DEFAULT_SUBJECTS))
    weekly_subject: dict[Edition, WeeklySubjectTemplate] = Field(
        default_factory=lambda: dict(DEFAULT_WEEKLY_SUBJECTS)
    )
    # Bytes of the HTML part as transmitted (Gmail clips past ~102 KB).
    max_bytes: int = Field(100_000, ge=10_000)
    # Characters of each abstract in the email (-1: whole, 0: hidden).
    abstract_chars: int = Field(500, ge=-1)
    # The sender's postal address for the footer (CAN-SPAM; Gmail's bulk-sender rules).
    postal_address: str | None = None
    max_lateness_days: int = Field(2, ge=0)
    bounce_limit: int = Field(3, ge=1)
    # Attempts per message over all runs before a temporary failure (4xx, lost
    # connection) becomes final: the daemon's backoff reaches it in about 2 hours.
    max_attempts: int = Field(16, ge=1)
    smtp: SmtpConfig = SmtpConfig()

    @field_validator("subject")
    @classmethod
    def _subject_templates(cls, value: dict[Edition, str]) -> dict[Edition, str]:
        return {Edition(k): v for k, v in DEFAULT_SUBJECTS.items()} | value

    @field_validator("weekly_subject")
    @classmethod
    def _weekly_subject_templates(cls, value: dict[Edition, str]) -> dict[Edition, str]:
        return {Edition(k): v for k, v in DEFAULT_WEEKLY_SUBJECTS.items()} | value

    @property
    def sender_address(self) -> str:
        return parseaddr(self.from_)[1]

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2]


_MAILBOX_SCHEMES = ("imap://", "imaps://", "maildir:", "mbox:")


def _check_bounce_mailbox(value: str) -> str:
    if not value.startswith(_MAILBOX_SCHEMES):
        raise ValueError(
            f"{value!r} is not a mailbox: use imap://USER@HOST[:PORT]/FOLDER, "
            "imaps://USER@HOST[:PORT]/FOLDER, maildir:PATH or mbox:PATH"
        )
    if value.startswith(("imap://", "imaps://")):
        from urllib.parse import urlsplit

        try:
            url = urlsplit(value)
            url.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an IMAP URL: {exc}") from None
        if not url.hostname or not url.username:
            raise ValueError(
                f"{value!r} needs a user and a host: imaps://USER@HOST[:PORT]/FOLDER "
                "(write an '@' in the user name as %40)"
            )
    elif not value.partition(":")[2]:
        raise ValueError(f"{value!r} has no path after the colon")
    return value


class BouncesConfig(Section):
    """Bounces, complaints and mailto unsubscribes (newsletter/bounces/)."""

    mailbox: Annotated[str, AfterValidator(_check_bounce_mailbox)] | None = None
    password_env: str | None = None
    poll_minutes: float = Field(10, gt=0)
    # Webhooks on `serve`: each is on when its secret (or topic list) is set.
    webhook_secret_env: str | None = None
    mailgun_signing_key_env: str | None = None
    ses_topic_arns: tuple[str, ...] = ()

    def password(self) -> str | None:
        """The IMAP password from the environment variable the config names."""
        return env_secret("bounces.password_env", self.password_env)

    def webhook_secret(self) -> str | None:
        """The generic webhook's shared secret (None: that endpoint is off)."""
        return env_secret("bounces.webhook_secret_env", self.webhook_secret_env)

    def mailgun_signing_key(self) -> str | None:
        """Mailgun's webhook signing key (None: the Mailgun endpoint is off)."""
        return env_secret("bounces.mailgun_signing_key_env", self.mailgun_signing_key_env)

    @field_validator("ses_topic_arns")
    @classmethod
    def _topic_arns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for arn in value:
            if not re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}", arn):
                raise ValueError(
                    f"{arn!r} is not an SNS topic ARN like "
                    "'arn:aws:sns:eu-west-1:123456789012:newsletter-bounces'"
                )
        return value
