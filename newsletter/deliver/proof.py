"""Proofs: test copies of an issue to one address, outside the ledger."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.files import write_atomic
from newsletter.headers import check_address
from newsletter.mail import build_edition_email, resolve_secret
from newsletter.model import Digest, Edition
from newsletter.store.subscribers import normalize_email
from newsletter.tokens import UNSUBSCRIBE, sign_token
from newsletter.transports import Transport, make_transport
from newsletter.transports.failures import SendFailure
from newsletter.transports.files import outbox_folder, outbox_name

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger("newsletter")


@dataclass(frozen=True)
class Proof:
    """One test copy sent: its edition, its Message-ID, and the file it was written
    to (file transport) or None (handed to the SMTP server)."""

    edition: Edition
    message_id: str
    path: Path | None


def send_test(
    config: Config,
    digest: Digest,
    to: str,
    editions: Edition | str | Sequence[Edition | str],
    *,
    now: dt.datetime | None = None,
    transport: Transport | None = None,
) -> list[Proof]:
    """One copy per edition to `to`, with [TEST] in the subject; not in the ledger.

    Each copy is a distinct message with a fresh Message-ID (a mailbox that
    deduplicates by id shows every test, and the real issue after them). With
    the file transport each lands in a new file
    outbox/YYYY-MM-DD/test/ADDRESS.EDITION.N.eml (N counts up: an earlier test
    is never overwritten). NewsletterError if `to` is not an address, the
    secret is missing, or the server does not accept a message.
    """
    if isinstance(editions, (Edition, str)):
        editions = [editions]
    chosen = list(dict.fromkeys(Edition(e) for e in editions))
    address = normalize_email(to)
    smtp = config.email.transport == "smtp"
    secret = resolve_secret(config, smtp=smtp)  # once: its warning too
    token = sign_token(secret, UNSUBSCRIBE, address)
    copies = []
    for edition in chosen:
        message = build_edition_email(config, digest, edition, now=now, test=True)
        msgid = make_msgid(f"test.{edition.value}", domain=config.email.sender_domain)
        copies.append(
            (edition, msgid, functools.partial(message.personalise, address, "", token, msgid))
        )
    if transport is None and not smtp:
        folder = outbox_folder(config, digest.date) / "test"
        proofs = [
            # The file transport writes what an 8BITMIME relay would get.
            Proof(edition, msgid, _write_new(folder, address, edition, personalise(eightbit=True)))
            for edition, msgid, personalise in copies
        ]
    else:
        proofs = _send(config, transport or make_transport(config, digest.date), address, copies)
    for proof in proofs:
        log.info("test message (%s edition) sent to %s", proof.edition.value, address)
    return proofs


def _send(
    config: Config,
    transport: Transport,
    address: str,
    copies: list[tuple[Edition, str, Callable[..., bytes]]],
) -> list[Proof]:
    sender = check_address(config.email.sender_address).envelope
    recipient = check_address(address).envelope
    transport.open()
    try:
        eightbit = getattr(transport, "eightbitmime", False)  # known once connected
        for _edition, _msgid, personalise in copies:
            transport.send(sender, recipient, personalise(eightbit=eightbit))
    except SendFailure as failure:
        raise NewsletterError(
            f"the test message to {address} was not accepted: {failure.reply}",
            hint="check the address and email.smtp settings",
        ) from None
    finally:
        transport.close()
    return [Proof(edition, msgid, None) for edition, msgid, _ in copies]


def _write_new(folder: Path, address: str, edition: Edition, data: bytes) -> Path:
    """Write data to the first free ADDRESS.EDITION.N.eml in folder (never over a file)."""
    stem = outbox_name(address).removesuffix(".eml")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        number = 1
        while True:
            path = folder / f"{stem}.{edition.value}.{number}.eml"
            try:  # claim the name: a concurrent send-test takes the next one
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                break
            except FileExistsError:
                number += 1
        try:
            write_atomic(path, data)
        except OSError:
            path.unlink(missing_ok=True)  # no empty file left behind
            raise
    except OSError as exc:
        raise NewsletterError(
            f"cannot write the test message in {folder}: {exc.strerror or exc}",
            hint="check paths.outbox in the config and the free space",
        ) from None
    return path
