"""VERP: a return address per delivery, so a bounce names its delivery.

Every message's envelope sender (MAIL FROM, which becomes the Return-Path) is
`email.bounce_address` with a signed token after a '+':

    bounces+2n9c.20250404.ko.9f2c41d07be3a865@example.org
            |    |        |  `- 64-bit MAC (tokens.sign_short), hex
            |    |        `- edition
            |    `- issue: its date, or its ISO week (2025w15) for a weekly email
            `- subscriber id, base 36

All lowercase, so a server that folds case keeps it valid; at most 45
characters after the local part (config_email.VERP_TOKEN_MAX), within RFC 5321's 64
for a local part. A DSN, an auto-reply or a feedback report that carries the
address anywhere (To:, Delivered-To:, the returned message's Return-Path)
names the delivery even when the rest of it is malformed, and a forged one
does not verify. (Variable Envelope Return Path: D. J. Bernstein, 1997.)
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from newsletter.model import Edition, IssueId, Week
from newsletter.tokens import sign_short, verify_short

PURPOSE = "verp"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class DeliveryRef:
    """One delivery: the subscriber's id, the issue (a date or a week) and the edition."""

    subscriber_id: int
    date: IssueId
    edition: Edition


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("a subscriber id is never negative")
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if not number:
            return out


class Verp:
    """Makes and reads the VERP addresses of one `email.bounce_address`.

    `address` runs once per message on the sending hot path (a few µs: one one-shot HMAC, hex).
    """

    def __init__(self, secret: bytes, bounce_address: str) -> None:
        self.secret = secret
        self.local, _, self.domain = bounce_address.rpartition("@")
        self._pattern = re.compile(
            rf"(?<![\w.+-]){re.escape(self.local)}\+([0-9a-z]{{1,13}})\.(\d{{8}}|\d{{4}}w\d{{2}})"
            rf"\.(ko|en|both)\.([0-9a-f]{{16}})@{re.escape(self.domain)}(?![\w-])",
            re.IGNORECASE,
        )

    def address(self, subscriber_id: int, day: str, edition: str) -> str:
        """The return address of one delivery; `day` is the issue as `model.issue_tag`
        writes it: the date as YYYYMMDD, or the week as 2025w15."""
        payload = f"{_base36(subscriber_id)}.{day}.{edition}"
        mac = sign_short(self.secret, PURPOSE, payload)
        return f"{self.local}+{payload}.{mac}@{self.domain}"

    def find(self, text: str) -> DeliveryRef | None:
        """The first genuine VERP address of ours in `text`; None if there is none."""
        for match in self._pattern.finditer(text):
            ident, day, edition, mac = (part.lower() for part in match.groups())
            payload = f"{ident}.{day}.{edition}"
            if not verify_short(self.secret, PURPOSE, payload, mac):
                continue
            try:
                date: IssueId = (
                    Week.fromisoformat(day)
                    if "w" in day
                    else dt.datetime.strptime(day, "%Y%m%d").date()
                )
            except ValueError:
                continue
            return DeliveryRef(int(ident, 36), date, Edition(edition))
        return None
