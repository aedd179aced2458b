"""What a transport raises when a message was not accepted.

The deliverer reads `permanent`, `scope` (`smtp_replies.Scope`: the recipient,
the message, the sender or the session) and `fatal` to decide between a retry,
a bounce and stopping the run; `deliver.wire` carries them between processes.
"""

from __future__ import annotations

from newsletter.smtp_replies import Scope


class SendFailure(Exception):
    """A message was not accepted. `code` is the SMTP reply code (None: no reply).

    `scope` says what was refused (`smtp_replies.Scope`): the recipient, the
    message (identical for everyone of its edition), the sender, or the session.
    """

    permanent = False

    def __init__(
        self,
        recipient: str,
        code: int | None,
        text: str,
        *,
        scope: Scope = Scope.RECIPIENT,
        fatal: bool = False,
    ) -> None:
        self.recipient = recipient
        self.code = code
        self.text = text
        super().__init__(f"{recipient}: {self.reply}")
        self.scope = scope
        # Every other message would fail the same way (the server refuses the
        # sender, the outbox cannot be written): the deliverer stops.
        self.fatal = fatal

    @property
    def reply(self) -> str:
        return f"{self.code} {self.text}" if self.code else self.text


class TemporaryFailure(SendFailure):
    """4xx or a lost connection: try again later."""


class PermanentFailure(SendFailure):
    """5xx: do not retry. `hard_bounce` when the server refused the recipient's mailbox."""

    permanent = True

    def __init__(
        self,
        recipient: str,
        code: int | None,
        text: str,
        hard_bounce: bool,
        *,
        scope: Scope = Scope.RECIPIENT,
        fatal: bool = False,
    ) -> None:
        super().__init__(recipient, code, text, scope=scope, fatal=fatal)
        self.hard_bounce = hard_bounce
