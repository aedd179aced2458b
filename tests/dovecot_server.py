"""A throw-away Dovecot IMAP server for the bounce-mailbox tests.

Debian's dovecot-imapd, started in the foreground with a config of its own on
free localhost ports (IMAP, and IMAPS with a certificate from `trustme`), a
passwd-file with one user and a Maildir in a temporary folder; stopped and
removed afterwards. As root, mail is stored as `nobody`; otherwise as the
current user (Dovecot's rootless mode).

Dovecot and trustme are real parts (tests/real_parts.py): missing, the test
skips, or fails under NEWSLETTER_REQUIRE_REAL=1. Installed but failing to
start is always a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import real_parts
from smtp_servers import free_port

USER = "bounces"
PASSWORD = "imap-test-password"


@dataclass
class Dovecot:
    host: str
    port: int
    tls_port: int
    maildir: Path  # the user's Maildir (INBOX)
    ca_file: Path  # trust this for imaps
    log: Path

    def url(self, folder: str = "INBOX", tls: bool = False) -> str:
        port = self.tls_port if tls else self.port
        return f"{'imaps' if tls else 'imap'}://{USER}@{self.host}:{port}/{folder}"


def _config(root: Path, port: int, tls_port: int, uid: int, gid: int, login_user: str) -> str:
    return f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = nltest-{port}
listen = 127.0.0.1
protocols = imap
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
default_login_user = {login_user}
default_internal_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0600
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
"""


@contextlib.contextmanager
def start_dovecot() -> Iterator[Dovecot]:
    """Dovecot on 127.0.0.1; skips the test (see real_parts) if it is not installed."""
    dovecot = real_parts.program("dovecot", "dovecot-imapd")
    trustme = real_parts.import_real("trustme")

    root = Path(tempfile.mkdtemp(prefix="nl-dovecot-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
            pwd.getpwnam("dovenull")
        except KeyError:
            real_parts.require_real(
                "Dovecot", "the users nobody/dovenull are missing (reinstall dovecot-core)"
            )
        uid, gid, login_user = nobody.pw_uid, nobody.pw_gid, "dovenull"
    else:
        me = pwd.getpwuid(os.geteuid())
        uid, gid, login_user = me.pw_uid, me.pw_gid, me.pw_name
    (root / "mail").mkdir()
    os.chown(root / "mail", uid, gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    port, tls_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port, tls_port, uid, gid, login_user))
    process = subprocess.Popen(
        [str(dovecot), "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(process, port, tls_port, root)
        yield Dovecot(
            "127.0.0.1", port, tls_port, root / "mail" / USER, root / "ca.pem", root / "dovecot.log"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], port: int, tls_port: int, root: Path) -> None:
    """Until both listeners accept a connection (the server is up); RuntimeError if
    Dovecot exits instead (installed but broken is a failure, not a skip)."""
    deadline = time.monotonic() + 120  # a hang guard: Dovecot exits or listens
    for each in (port, tls_port):
        while True:
            if process.poll() is not None:
                log = (
                    (root / "dovecot.log").read_text(errors="replace")
                    if (root / "dovecot.log").exists()
                    else ""
                )
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(f"Dovecot did not start: {err or log}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", each), 0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot did not listen on {each} within 120 s")
            time.sleep(0.05)
