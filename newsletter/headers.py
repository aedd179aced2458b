"""Addresses and header lines that nothing a reader or author typed can break.

An address is checked before it goes into a header or an SMTP envelope (no
CR/LF, no angle brackets, no RFC 2047 encoded-words: RFC 5321, RFC 5322,
RFC 2047 section 5); header text is one line, RFC 2047-encoded when not ASCII,
folded at 78 characters; the Message-ID of a delivery is deterministic.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr

from newsletter.model import IssueId, issue_tag

# The longest address (RFC 5321 4.5.3.1.3: a path is at most 256 octets with
# its angle brackets).
MAX_ADDRESS = 254

# Anything that could end a header line or break out of <...>; and lone
# surrogates (e.g. from a JSON \udXXX escape), which no header can carry.
_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>()\[\],;:\"\\\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Address:
    """A recipient address checked for use in a header and an SMTP envelope."""

    display: str  # as stored (domain may be Unicode)
    envelope: str  # ASCII (IDNA domain) when possible
    smtputf8: bool  # the local part is not ASCII: needs SMTPUTF8


def check_address(address: str) -> Address:
    """Validate an address for headers/envelope; ValueError if it is unsafe.

    Cheap on purpose (it runs per recipient): the store already normalised the
    address with email-validator; this only guarantees it cannot inject a header.
    """
    local, at, domain = address.rpartition("@")
    if len(address.encode("utf-8", "replace")) > MAX_ADDRESS:
        raise ValueError(f"address {address[:60]!r}... is longer than {MAX_ADDRESS} octets")
    if not at or not local or not domain or _BAD_ADDRESS.search(address) or "@" in domain:
        raise ValueError(f"unsafe or malformed address {address!r}")
    if _CONTROL.search(address):
        raise ValueError(f"unsafe or malformed address {address!r}")
    if "=?" in local and "?=" in local.split("=?", 1)[1]:
        # Never decoded (RFC 2047 §5: no encoded-words in an addr-spec).
        raise ValueError(f"address {address!r} holds an RFC 2047 encoded-word")
    try:
        ascii_domain = domain.encode("ascii").decode()
    except UnicodeEncodeError:
        try:
            ascii_domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"address {address!r} has an invalid domain") from None
    smtputf8 = not local.isascii()
    return Address(address, f"{local}@{ascii_domain}", smtputf8)


def needs_smtputf8(address: str) -> bool:
    """Whether mail to `address` needs SMTPUTF8 (RFC 6531): its local part is
    not ASCII (a Unicode domain does not: it travels as IDNA A-labels)."""
    return not address.rpartition("@")[0].isascii()


def smtputf8_warning(addresses: list[str], shown: int = 5) -> str | None:
    """One line saying these addresses need a relay with SMTPUTF8 (None: none do);
    names the first `shown`. Said when they are added, not first when a relay
    without it refuses them for good."""
    needing = [a for a in addresses if needs_smtputf8(a)]
    if not needing:
        return None
    names = ", ".join(needing[:shown]) + (
        f" and {len(needing) - shown} more" if len(needing) > shown else ""
    )
    return (
        f"{names}: the part before the @ is not ASCII, so mail to "
        f"{'it' if len(needing) == 1 else 'them'} needs a relay that supports SMTPUTF8 "
        "(RFC 6531); a relay without it refuses every message to "
        f"{'it' if len(needing) == 1 else 'them'}"
    )


def one_line(text: str) -> str:
    """Header text: control characters (CR, LF, ...) become single spaces."""
    return " ".join(_CONTROL.sub(" ", text).split())


def encode_text_header(name: str, value: str) -> bytes:
    """'Name: value' folded, RFC 2047-encoded when not ASCII (no CRLF at the end)."""
    value = one_line(value)
    charset = "us-ascii" if value.isascii() and "=?" not in value else "utf-8"
    encoded = Header(value, charset, header_name=name, maxlinelen=78).encode(linesep="\r\n")
    return f"{name}: {encoded}".encode("ascii")


def list_id_header(title: str, list_id: str) -> bytes:
    """RFC 2919: only the description may be encoded; the <list-id> stays literal."""
    phrase = encode_text_header("List-Id", one_line(title).replace("<", "").replace(">", ""))
    return phrase + f" <{list_id}>".encode("ascii")


# RFC 5322 caps a header line at 998 octets; a display name longer than this is cut.
MAX_NAME = 100


def encode_mailbox(name: str, address: Address) -> bytes:
    """'Name <addr>' for a header: name RFC 2047-encoded if needed, never a CR/LF."""
    name = one_line(name)[:MAX_NAME]
    if address.smtputf8:
        # RFC 6532: the header carries UTF-8; only sent to SMTPUTF8 servers.
        shown = formataddr((name, "x@x"), charset="utf-8")[: -len("<x@x>")] if name else ""
        return f"{shown}<{address.display}>".encode() if name else address.display.encode()
    return formataddr((name, address.envelope), charset="utf-8").encode("ascii")


def message_id(issue: IssueId, edition: str, address: str, domain: str) -> str:
    """Deterministic per (issue, edition, recipient): a retry or a resend after a
    crash is recognisably the same message (RFC 5322 3.6.4). Only for deliveries
    of the ledger: every other message gets a fresh id. `issue` is a date, or
    a `Week` for the weekly email (`<2025w15.ko.…@domain>`); every topic
    variant of an issue shares the id, as it is one delivery.

    Built by hand: make_msgid() without a domain does a slow hostname lookup.
    """
    key = f"{issue.isoformat()}|{edition}|{address.lower()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"<{issue_tag(issue)}.{edition}.{digest}@{domain}>"
