"""A proof: one test copy of an issue to one address, outside the ledger."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from newsletter.deliver.issue import refuse_oversize
from newsletter.errors import NewsletterError
from newsletter.mail import (
    UNSUBSCRIBE,
    build_edition_email,
    check_address,
    resolve_secret,
    sign_token,
)
from newsletter.model import Digest, Edition
from newsletter.store.subscribers import normalize_email
from newsletter.transports import (
    FileTransport,
    SendFailure,
    Transport,
    make_transport,
    outbox_folder,
)

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")


def send_test(
    config: Config,
    digest: Digest,
    to: str,
    edition: Edition | str,
    *,
    now: dt.datetime | None = None,
    transport: Transport | None = None,
) -> None:
    """One copy to `to` with [TEST] in the subject; not recorded in the ledger.

    With the file transport it lands in outbox/YYYY-MM-DD/test/. NewsletterError
    if `to` is not an address, the secret is missing, or the server does not
    accept the message.
    """
    edition = Edition(edition)
    address = normalize_email(to)
    smtp = config.email.transport == "smtp"
    secret = resolve_secret(config, smtp=smtp)
    message = build_edition_email(config, digest, edition, now=now, test=True)
    data = message.personalise(address, "", sign_token(secret, UNSUBSCRIBE, address))
    refuse_oversize(config, message, len(data))
    if transport is None:
        transport = (
            make_transport(config, digest.date)
            if smtp
            else FileTransport(outbox_folder(config, digest.date) / "test")
        )
    transport.open()
    try:
        transport.send(
            check_address(config.email.sender_address).envelope,
            check_address(address).envelope,
            data,
        )
    except SendFailure as failure:
        raise NewsletterError(
            f"the test message to {address} was not accepted: {failure.reply}",
            hint="check the address and email.smtp settings",
        ) from None
    finally:
        transport.close()
    log.info("test message (%s edition) sent to %s", edition.value, address)
