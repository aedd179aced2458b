"""The bounce mailbox (`bounces.mailbox`): read every message, move only the ones acted on.

    imap://USER@HOST[:PORT]/FOLDER    IMAP, STARTTLS when offered (required off loopback)
    imaps://USER@HOST[:PORT]/FOLDER   IMAP over TLS (port 993 by default)
    maildir:PATH                      a Maildir (Maildir++ subfolders, as Dovecot keeps them)
    mbox:PATH                         an mbox file, locked as MDAs lock it (fcntl + dotlock)

The password of an IMAP mailbox is in the environment variable named by
`bounces.password_env`. A message acted on goes to the folder `processed`
(IMAP: a folder in the personal namespace; Maildir: the subfolder `.processed`,
file name and flags kept; mbox: the file `PATH.processed`). Nothing is ever
deleted, and a message that is not acted on is not touched at all: never
rewritten, never marked seen, never moved (IMAP reads with BODY.PEEK from a
read-only EXAMINE; Maildir and mbox files are only read).

Every mailbox reads its messages with `items()` and then moves the acted-on
ones with `move_processed(keys)`, once at the end of a run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import mailbox
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from newsletter.errors import NewsletterError

if TYPE_CHECKING:
    from newsletter.config import Config

PROCESSED = "processed"
# UIDs fetched per IMAP FETCH command.
_FETCH_CHUNK = 50


@dataclass(frozen=True)
class Item:
    """One message: its key in the mailbox (UID, file, mbox key) and its bytes."""

    key: str
    data: bytes


class Mailbox(Protocol):
    """A bounce mailbox; `source` names it in the event log (imap, maildir, mbox)."""

    source: str
    label: str

    def open(self) -> None:
        """Connect or lock; NewsletterError (with a hint) if the mailbox is not usable."""
        ...

    def items(self) -> Iterator[Item]:
        """Every message, read without changing anything (no flag, no move)."""
        ...

    def move_processed(self, keys: list[str]) -> int:
        """Move these messages to `processed` (bytes and flags kept); how many moved."""
        ...

    def close(self) -> None:
        """Log out or unlock; safe to call twice."""
        ...


def open_mailbox(config: Config) -> Mailbox:
    """The mailbox `bounces.mailbox` names, opened; NewsletterError if it cannot be."""
    spec = config.bounces.mailbox
    if not spec:
        raise NewsletterError(
            "bounces.mailbox is not set: there is no mailbox to read",
            hint="set bounces.mailbox to imaps://USER@HOST/INBOX, maildir:PATH or mbox:PATH",
        )
    box: Mailbox
    if spec.startswith("maildir:"):
        box = MaildirBox(Path(spec.partition(":")[2]))
    elif spec.startswith("mbox:"):
        box = MboxBox(Path(spec.partition(":")[2]))
    else:
        password = config.bounces.password()
        if password is None:
            raise NewsletterError(
                "bounces.password_env is not set: an IMAP mailbox needs a password",
                hint="set bounces.password_env to the name of an environment variable "
                "holding the password",
            )
        box = ImapBox(spec, password)
    box.open()
    return box


# --- Maildir -----------------------------------------------------------------------------


class MaildirBox:
    """A Maildir: messages are the files in new/ and cur/; moved by rename."""

    source = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"maildir:{path}"

    def open(self) -> None:
        if not (self.path / "cur").is_dir() or not (self.path / "new").is_dir():
            raise NewsletterError(
                f"{self.path} is not a Maildir (it has no cur/ and new/ folders)",
                hint="check bounces.mailbox; a Maildir is made by the mail server on first delivery",
            )

    def items(self) -> Iterator[Item]:
        for sub in ("new", "cur"):
            for name in sorted(os.listdir(self.path / sub)):
                if name.startswith("."):
                    continue
                try:
                    data = (self.path / sub / name).read_bytes()
                except (FileNotFoundError, IsADirectoryError):
                    continue  # taken by another client meanwhile
                yield Item(f"{sub}/{name}", data)

    def move_processed(self, keys: list[str]) -> int:
        """Rename each file into `.processed/` (same new/ or cur/, same name: flags kept)."""
        if not keys:
            return 0
        target = self.path / f".{PROCESSED}"
        for sub in ("tmp", "new", "cur"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        (target / "maildirfolder").touch(exist_ok=True)
        moved = 0
        for key in keys:
            source, destination = self.path / key, target / key
            if destination.exists():
                continue  # never overwrite (the names are unique; this cannot happen twice)
            try:
                os.rename(source, destination)
            except FileNotFoundError:
                continue  # moved by another client meanwhile
            moved += 1
        return moved

    def close(self) -> None:
        pass


# --- mbox ----------------------------------------------------------------------------------


class MboxBox:
    """An mbox file, locked while read and rewritten (Python's `mailbox.mbox`).

    Moving appends the message, From_ line included, to `PATH.processed`
    first, then removes it from PATH; the other messages are copied byte for
    byte. A crash in between leaves a copy in both, never none.
    """

    source = "mbox"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = f"mbox:{path}"
        self.box: mailbox.mbox | None = None

    def open(self) -> None:
        if not self.path.is_file():
            raise NewsletterError(
                f"{self.path} is not an mbox file",
                hint="check bounces.mailbox; the mail server creates it on first delivery",
            )
        try:
            self.box = mailbox.mbox(self.path, create=False)
            self.box.lock()
        except (OSError, mailbox.Error) as exc:
            self.box = None
            raise NewsletterError(
                f"cannot open and lock the mbox {self.path}: {exc}",
                hint="check its permissions, and that no other program holds its lock",
            ) from None

    def items(self) -> Iterator[Item]:
        assert self.box is not None
        for key in self.box.iterkeys():
            yield Item(str(key), self.box.get_bytes(key))

    def move_processed(self, keys: list[str]) -> int:
        assert self.box is not None
        if not keys:
            return 0
        target = mailbox.mbox(self.path.with_name(f"{self.path.name}.{PROCESSED}"), create=True)
        target.lock()
        try:
            for key in keys:
                target.add(self.box.get_bytes(int(key), from_=True))
            target.flush()
        finally:
            target.unlock()
            target.close()
        for key in keys:
            self.box.remove(int(key))
        self.box.flush()
        return len(keys)

    def close(self) -> None:
        if self.box is not None:
            with contextlib.suppress(Exception):
                self.box.unlock()
            self.box.close()
            self.box = None


# --- IMAP ----------------------------------------------------------------------------------


class ImapBox:
    """A folder on an IMAP server (IMAPClient): read-only EXAMINE and BODY.PEEK[] to
    read; MOVE (RFC 6851), or COPY + UID EXPUNGE of those UIDs only (RFC 4315), to move."""

    source = "imap"

    def __init__(self, url: str, password: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.tls = parts.scheme == "imaps"
        self.host = parts.hostname or ""
        self.port = parts.port or (993 if self.tls else 143)
        self.user = unquote(parts.username or "")
        self.folder = unquote(parts.path.lstrip("/")) or "INBOX"
        self.password = password
        self.timeout = timeout
        self.label = (
            f"{parts.scheme}://{parts.username}@{parts.netloc.rpartition('@')[2]}/{self.folder}"
        )
        self.client = None
        self._uidvalidity: int | None = None

    def open(self) -> None:
        from imapclient import IMAPClient
        from imapclient.exceptions import IMAPClientError, LoginError

        context = ssl.create_default_context()
        try:
            client = IMAPClient(
                self.host, port=self.port, ssl=self.tls, ssl_context=context, timeout=self.timeout
            )
        except ssl.SSLError as exc:
            raise _tls_error(self.host, exc) from None
        except (OSError, IMAPClientError) as exc:
            raise NewsletterError(
                f"cannot connect to the IMAP server {self.host}:{self.port}: {exc}",
                hint="check the host and port in bounces.mailbox, and that the server runs",
            ) from None
        try:
            if not self.tls:
                if b"STARTTLS" in client.capabilities():
                    client.starttls(context)
                elif not _loopback(self.host):
                    raise NewsletterError(
                        f"{self.host} offers no STARTTLS: the password would go in clear",
                        hint="use imaps:// in bounces.mailbox",
                    )
            client.login(self.user, self.password)
        except ssl.SSLError as exc:
            _logout(client)
            raise _tls_error(self.host, exc) from None
        except LoginError:
            _logout(client)
            raise NewsletterError(
                f"the IMAP server {self.host} refused the login of {self.user!r}",
                hint="check the user in bounces.mailbox and the password in the "
                "environment variable that bounces.password_env names",
            ) from None
        except (OSError, IMAPClientError) as exc:
            _logout(client)
            raise NewsletterError(f"IMAP {self.host}: {exc}") from None
        self.client = client

    def items(self) -> Iterator[Item]:
        from imapclient.exceptions import IMAPClientError

        client = self.client
        assert client is not None
        try:
            info = client.select_folder(self.folder, readonly=True)
            self._uidvalidity = int(info.get(b"UIDVALIDITY", 0))
            uids = sorted(client.search("ALL"))
            for start in range(0, len(uids), _FETCH_CHUNK):
                chunk = uids[start : start + _FETCH_CHUNK]
                for uid, data in sorted(client.fetch(chunk, ["BODY.PEEK[]"]).items()):
                    body = data.get(b"BODY[]")
                    if isinstance(body, bytes):
                        yield Item(str(uid), body)
        except (OSError, IMAPClientError) as exc:
            raise NewsletterError(
                f"cannot read the folder {self.folder!r} on {self.host}: {exc}",
                hint="check the folder in bounces.mailbox",
            ) from None

    def move_processed(self, keys: list[str]) -> int:
        from imapclient.exceptions import IMAPClientError

        client = self.client
        assert client is not None
        if not keys:
            return 0
        uids = [int(key) for key in keys]
        try:
            info = client.select_folder(self.folder)
            if int(info.get(b"UIDVALIDITY", 0)) != self._uidvalidity:
                return 0  # the folder was recreated meanwhile: the next run sees it afresh
            target = self._processed_folder()
            if client.has_capability("MOVE"):
                client.move(uids, target)
            elif client.has_capability("UIDPLUS"):
                client.copy(uids, target)
                client.delete_messages(uids)
                client.uid_expunge(uids)  # only these UIDs, never others marked deleted
            else:
                raise NewsletterError(
                    f"{self.host} supports neither MOVE nor UIDPLUS: "
                    "messages cannot be moved without touching others",
                    hint="use a server with MOVE (RFC 6851), such as Dovecot",
                )
            client.unselect_folder()
        except (OSError, IMAPClientError) as exc:
            raise NewsletterError(
                f"cannot move messages to {PROCESSED!r} on {self.host}: {exc}",
                hint="they were recorded; the next run moves them",
            ) from None
        return len(uids)

    def _processed_folder(self) -> str:
        client = self.client
        assert client is not None
        prefix = ""
        with contextlib.suppress(Exception):
            personal = client.namespace().personal
            if personal:
                prefix = personal[0][0]
                prefix = prefix.decode() if isinstance(prefix, bytes) else str(prefix)
        name = f"{prefix}{PROCESSED}"
        if not client.folder_exists(name):
            client.create_folder(name)
        return name

    def close(self) -> None:
        if self.client is not None:
            _logout(self.client)
            self.client = None


def _tls_error(host: str, exc: ssl.SSLError) -> NewsletterError:
    return NewsletterError(
        f"TLS with the IMAP server {host} failed: {exc}",
        hint="its certificate must be valid for that host name and trusted by this "
        "system (or by the file $SSL_CERT_FILE names)",
    )


def _logout(client: object) -> None:
    with contextlib.suppress(Exception):
        client.logout()  # type: ignore[attr-defined]
    with contextlib.suppress(Exception):
        client.shutdown()  # type: ignore[attr-defined]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(
                ipaddress.ip_address(info[4][0]).is_loopback
                for info in socket.getaddrinfo(host, None)
            )
        except (OSError, ValueError):
            return False
