"""The file transport: one `.eml` per recipient in the outbox (email.transport: file).

A rerun overwrites a recipient's file, never duplicates it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError, file_error
from newsletter.files import write_atomic
from newsletter.smtp_replies import Scope
from newsletter.transports.failures import TemporaryFailure

if TYPE_CHECKING:
    from newsletter.config import Config


# Letters and digits of any script stay (a Hangul address keeps its name);
# separators, control and shell-special characters do not.
_UNSAFE = re.compile(r"[^\w@.+\-]")


def outbox_name(recipient: str) -> str:
    """A stable file name for a recipient: the address, made safe for file systems."""
    safe = _UNSAFE.sub("_", unicodedata.normalize("NFC", recipient.lower()))
    if safe != recipient.lower() or safe.startswith("."):
        safe = f"{safe.lstrip('.')}-{hashlib.sha256(recipient.encode()).hexdigest()[:8]}"
    return f"{safe}.eml"


class FileTransport:
    """One `.eml` per message under outbox/YYYY-MM-DD/ (atomic; reruns overwrite).

    The files hold what an SMTP relay that advertises 8BITMIME would receive.
    """

    eightbitmime = True

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise file_error(exc, self.folder, "create") from None

    def send(self, sender: str, recipient: str, message: bytes) -> None:
        """Write the recipient's .eml; a failed write (full disk, permissions)
        is fatal: every other message would fail the same way."""
        try:
            write_atomic(self.folder / outbox_name(recipient), message)
        except NewsletterError as exc:
            raise TemporaryFailure(
                recipient, None, f"{exc.message} ({exc.hint})", scope=Scope.SESSION, fatal=True
            ) from None

    def close(self) -> None:
        pass


def outbox_folder(config: Config, date: dt.date) -> Path:
    """Where the file transport writes the issue of `date`: outbox/YYYY-MM-DD/."""
    return config.paths.outbox / date.isoformat()
