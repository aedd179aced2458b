"""What an SMTP reply refuses: one recipient, the message, the sender, or the session.

A pure function, `classify(stage, code, text) -> Verdict`: the transport acts on
the verdict (reconnect, retry at once, give up) and the delivery run records it
(a recipient's failure, an edition stopped, the run stopped). No I/O here.

The rules, and where they come from:

- RFC 5321 §4.2.1: 2yz accepts; 4yz is transient (try again later), 5yz
  permanent (the same command will fail the same way). 354 answers DATA.
- RFC 5321 §3.8 and §4.2.3: 421 means the server is closing the channel, in
  answer to any command: the *session* is over, not the recipient's or the
  message's chances. Seen from relays at their per-session limits.
- RFC 5321 §4.5.3.1.10: the answer to one RCPT too many is 452 (older servers
  send 552, which clients "SHOULD treat as temporary"); it refuses the session's
  recipient count, so a new session takes the recipient.
- RFC 5321 §3.3 and §4.1.1.4: the reply after the message's final "." is about
  the message (the whole transaction), hence identical for every recipient of
  the same edition: `552 message too large`, `554 transaction failed`.
- RFC 1870 §6.1: with SIZE, a too-large message is refused at MAIL with 552.
- RFC 3463 (enhanced status codes, `class.subject.detail`, first in the text
  per RFC 2034): subject 1 (addressing) and 2 (mailbox) are about the
  recipient, wherever they come; X.5.3 is "too many recipients"; X.3.4 and
  subject 6 (media) are about the message.

A temporary refusal on the same connection several times in a row
(`TEMPORARY_STREAK`) also wears the session out: the transport QUITs and
reconnects before the next message (`session_worn_out`). A session-limit
refusal after some messages were accepted teaches the transport the relay's
limit (`learned_limit`), which it then stays under.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# Consecutive temporary refusals on one connection after which it is replaced.
TEMPORARY_STREAK = 3

_ENHANCED = re.compile(r"\s*([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_TOO_MANY = re.compile(r"too many recipients", re.IGNORECASE)


class Stage(enum.Enum):
    """The command a reply answers."""

    MAIL = enum.auto()
    RCPT = enum.auto()
    DATA = enum.auto()  # the DATA command itself (354 wanted)
    END = enum.auto()  # the message and its final "."


class Scope(enum.Enum):
    """What a reply accepts or refuses."""

    ACCEPTED = enum.auto()
    RECIPIENT = enum.auto()  # this recipient only: the others go on
    MESSAGE = enum.auto()  # this message, for every recipient: stop its edition
    SENDER = enum.auto()  # the envelope sender or the account: stop the run
    SESSION = enum.auto()  # this connection: QUIT and reconnect


@dataclass(frozen=True)
class Verdict:
    """The meaning of one reply.

    `permanent`: a 5yz that still holds after a new session (never for SESSION).
    `bounce`: a permanent refusal of the recipient's mailbox (a hard bounce).
    `session_limit`: the relay's per-session limit: retry at once on a new session.
    """

    scope: Scope
    permanent: bool = False
    bounce: bool = False
    session_limit: bool = False


ACCEPTED = Verdict(Scope.ACCEPTED)


def enhanced_code(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 status code at the start of a reply's text, e.g. (5, 1, 1)."""
    match = _ENHANCED.match(text)
    if match is None:
        return None
    klass, subject, detail = (int(part) for part in match.groups())
    return klass, subject, detail


def classify(stage: Stage, code: int, text: str) -> Verdict:
    """The verdict on reply `code` `text` to the command of `stage` (see the module doc)."""
    if 200 <= code < 300 or (stage is Stage.DATA and code == 354):
        return ACCEPTED
    if code == 421:
        return Verdict(Scope.SESSION, session_limit=True)
    if not 400 <= code < 600:
        # A reply that makes no sense here (1yz, 3yz, 6yz...): the session is confused.
        return Verdict(Scope.SESSION)
    permanent = code >= 500
    status = enhanced_code(text)
    subject = status[1] if status else None
    about_recipient = subject in (1, 2)
    if stage is Stage.RCPT:
        too_many = (
            (status is not None and status[1:] == (5, 3))
            or _TOO_MANY.search(text) is not None
            or (code == 452 and not about_recipient)
        )
        if too_many:
            return Verdict(Scope.SESSION, session_limit=True)
        # A policy refusal (X.7.x) is not the mailbox's fault: no hard bounce.
        return Verdict(
            Scope.RECIPIENT, permanent, bounce=permanent and (subject is None or about_recipient)
        )
    if stage is Stage.MAIL:
        about_message = code == 552 or subject == 6 or (status is not None and status[1:] == (3, 4))
        return Verdict(Scope.MESSAGE if about_message else Scope.SENDER, permanent)
    # DATA or end of data: the whole transaction, unless the code names the recipient.
    if permanent and about_recipient:
        return Verdict(Scope.RECIPIENT, permanent=True, bounce=True)
    return Verdict(Scope.MESSAGE, permanent)


def session_worn_out(streak: int) -> bool:
    """Whether `streak` temporary refusals in a row mean: replace the connection."""
    return streak >= TEMPORARY_STREAK


def learned_limit(accepted: int, current: int) -> int:
    """Messages per session to allow after a session-limit refusal.

    `accepted`: messages the refusing session had accepted; `current`: the
    limit so far. The relay took `accepted`, so that is its limit (never below 1).
    """
    return max(1, min(accepted, current))
