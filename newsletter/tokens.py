"""Signed tokens for the web service: expiring ones and CSRF form tokens.

Both reuse `sign_token`'s scheme (an HMAC-SHA256 over purpose and a
base64url payload), so there is one way of signing in the project:

- an expiring token signs the purpose *with its issue time* (`confirm@1743724800`)
  and carries that time in clear after a final dot; changing the time breaks
  the MAC, and the verifier alone decides how old is too old;
- a CSRF form token signs the random nonce held in the browser's cookie
  (signed double-submit: no server-side session store is needed).

- a short token (`sign_short`) is a 64-bit lowercase hex MAC of a clear payload,
  for places that may fold case, such as the local part of the VERP return
  address (`newsletter.bounces.verp`).

The unsubscribe token in every email already sent is `sign_token(secret,
UNSUBSCRIBE, address)` and never expires; it is verified with
`verify_token` as before.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import secrets

UNSUBSCRIBE = "unsubscribe"
# Used only by the file transport when $NEWSLETTER_SECRET is unset (dev/preview).
DEV_SECRET = b"newsletter-dev-secret-not-for-production"
CONFIRM = "confirm"
CSRF = "csrf"
# How long a confirmation link stays valid.
CONFIRM_MAX_AGE = dt.timedelta(days=3)
# What our tokens are made of. verify_token raises (instead of answering
# None) on non-ASCII input, so anything from a URL or form is checked first.
_WELL_FORMED = re.compile(r"[A-Za-z0-9_.\-]{1,1000}")
# A token issued "in the future" by more than this is not ours (clock skew allowed).
_FUTURE_SKEW = dt.timedelta(minutes=5)


class TokenError(Exception):
    """A token that cannot be used; the web pages say which kind to the reader."""


class InvalidToken(TokenError):
    """Forged, truncated or signed for another purpose."""


class ExpiredToken(TokenError):
    """Genuine but too old (the address is known; it may be used to say so)."""

    def __init__(self, address: str) -> None:
        super().__init__(f"expired token for {address}")
        self.address = address


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_token(secret: bytes, purpose: str, address: str) -> str:
    """A URL-safe token binding an address to a purpose (e.g. 'unsubscribe').

    Only [A-Za-z0-9_.-]: safe in URLs, headers and quoted-printable bodies.
    """
    payload = _b64(address.encode("utf-8"))
    mac = hmac.new(secret, f"{purpose}\0{payload}".encode("ascii"), hashlib.sha256)
    return f"{payload}.{_b64(mac.digest()[:18])}"


def verify_token(secret: bytes, purpose: str, token: str) -> str | None:
    """The address a token was signed for, or None if it is forged or malformed."""
    payload, dot, mac = token.partition(".")
    # Tokens come from URLs anyone can edit: anything non-ASCII is forged.
    if not dot or not payload or not mac or not token.isascii():
        return None
    good = hmac.new(secret, f"{purpose}\0{payload}".encode("ascii"), hashlib.sha256)
    if not hmac.compare_digest(_b64(good.digest()[:18]), mac):
        return None
    try:
        return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def well_formed(token: str | None) -> bool:
    """Whether a value from a request can be a token of ours (safe to verify)."""
    return bool(token) and _WELL_FORMED.fullmatch(token or "") is not None


def verify_address(secret: bytes, purpose: str, token: str | None) -> str | None:
    """verify_token for request input: None for anything forged or malformed."""
    if token is None or not well_formed(token):
        return None
    return verify_token(secret, purpose, token)


def _stamp(now: dt.datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def sign_expiring(secret: bytes, purpose: str, address: str, now: dt.datetime) -> str:
    """A URL-safe token for (purpose, address), issued at `now`."""
    issued = _stamp(now)
    return f"{sign_token(secret, f'{purpose}@{issued}', address)}.{issued}"


def verify_expiring(
    secret: bytes,
    purpose: str,
    token: str,
    now: dt.datetime,
    max_age: dt.timedelta = CONFIRM_MAX_AGE,
) -> str:
    """The address the token was signed for; InvalidToken or ExpiredToken otherwise."""
    signed, issued_text = _split_issued(token)
    address = verify_token(secret, f"{purpose}@{issued_text}", signed)
    if address is None:
        raise InvalidToken("bad signature")
    age = _stamp(now) - int(issued_text)
    if age < -_FUTURE_SKEW.total_seconds():
        raise InvalidToken("issued in the future")
    if age > max_age.total_seconds():
        raise ExpiredToken(address)
    return address


def issued_at(token: str) -> dt.datetime:
    """When an expiring token was issued (UTC, whole seconds), read from its clear part.

    Only meaningful for a token `verify_expiring` accepted (the time is signed);
    InvalidToken if there is no time to read.
    """
    return dt.datetime.fromtimestamp(int(_split_issued(token)[1]), dt.UTC)


def _split_issued(token: str) -> tuple[str, str]:
    """A well-formed expiring token's signed part and issue time (up to 12 digits,
    in clear); InvalidToken for anything else."""
    signed, dot, issued_text = token.rpartition(".")
    if not well_formed(token) or not dot or not issued_text.isdigit() or len(issued_text) > 12:
        raise InvalidToken("malformed token")
    return signed, issued_text


# --- CSRF: signed double-submit ----------------------------------------------------


def new_csrf_nonce() -> str:
    """The random value kept in the browser's CSRF cookie."""
    return secrets.token_urlsafe(18)


def csrf_token(secret: bytes, nonce: str) -> str:
    """The form field that goes with a cookie nonce; only the server can make it."""
    return sign_token(secret, CSRF, nonce)


def csrf_valid(secret: bytes, nonce: str | None, token: str | None) -> bool:
    """Whether the form's token was made by us for the nonce in this browser's cookie."""
    if not nonce or not token or not well_formed(nonce):
        return False
    signed_nonce = verify_address(secret, CSRF, token)
    return signed_nonce is not None and secrets.compare_digest(signed_nonce, nonce)


# --- short MACs (case-insensitive places) --------------------------------------------

# 64 bits, as 16 lowercase hex digits: forging one takes ~2**63 tries, each of
# them an email to our mailbox.
SHORT_MAC_CHARS = 16


def sign_short(secret: bytes, purpose: str, payload: str) -> str:
    """The MAC of an ASCII `payload` for `purpose`: 16 lowercase hex digits.

    The same HMAC-SHA256 over purpose and payload as `sign_token`, cut to
    64 bits and written in hex, so that a server folding the case of an address
    keeps it valid. Hex, not base32: `bytes.hex` is C, `base64.b32encode` is
    Python and cost more than the HMAC itself (this runs once per message).
    """
    # hmac.digest: OpenSSL's one-shot HMAC, a few times faster than hmac.new.
    return hmac.digest(secret, f"{purpose}\0{payload}".encode("ascii"), "sha256")[:8].hex()


def verify_short(secret: bytes, purpose: str, payload: str, mac: str) -> bool:
    """Whether `mac` (any case) is `sign_short(secret, purpose, payload)`."""
    if not payload.isascii() or not mac.isascii() or len(mac) != SHORT_MAC_CHARS:
        return False
    return hmac.compare_digest(sign_short(secret, purpose, payload), mac.lower())
