"""What in the email settings hurts delivery: warnings for `check` and `publish`.

setup_warnings(config) -> [message, ...]
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from newsletter.mail import subject_text

if TYPE_CHECKING:
    from newsletter.config import Config


def shouting(subject: str) -> bool:
    """Whether spam filters read the subject as all capitals: it has a space, 10+
    characters, and its Latin letters (the only ones with case they count) are
    all capitals, as SpamAssassin's SUBJ_ALL_CAPS tests ('[ML 논문] 2025년 4월
    4일' is, for its only letters are "ML")."""
    subject = subject.strip()
    letters = re.sub(r"[^A-Za-z]", "", subject)
    return " " in subject and len(subject) >= 10 and bool(letters) and letters.isupper()


def setup_warnings(config: Config) -> list[str]:
    """What in the email settings hurts delivery, for `check` and `publish`:
    an SMTP sender without email.postal_address (CAN-SPAM and Gmail's
    bulk-sender guidelines ask for one in every message), and subjects that
    spam filters score as all capitals."""
    warnings = []
    if config.email.transport == "smtp" and not config.email.postal_address:
        warnings.append(
            "email.postal_address is not set: bulk mail should carry the sender's postal "
            "address (CAN-SPAM, Gmail's sender guidelines); set it to show it in every "
            "email's footer"
        )
    sample = dt.date(2025, 4, 4)
    for edition in config.editions:
        subject = subject_text(config, edition, sample, 4)
        if shouting(subject):
            warnings.append(
                f"email.subject.{edition.value} reads as all capitals to spam filters "
                f"({subject!r}: its only Latin letters are capitals; SpamAssassin "
                "SUBJ_ALL_CAPS): add a lower-case word, e.g. '[ML Papers] {date} · {papers}'"
            )
    return warnings
