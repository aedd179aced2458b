"""The tests' safety net: no test, and no process a test starts, reaches arXiv.

conftest.py puts this folder on PYTHONPATH, so every Python process the tests
start (the CLI, the daemon) imports this module at start-up, as it does any
`sitecustomize`; conftest also installs it in the test process itself. Name
lookups of arxiv.org and huggingface.co (and their subdomains, such as
export.arxiv.org) fail at once with an error that says why, and each attempt
is appended to the file named by $NETGUARD_LOG, which conftest checks after
every test: a test that tried fails, naming the host. Tests that look papers
up use the fake arXiv server on 127.0.0.1 (tests/arxiv_server.py).
"""

from __future__ import annotations

import os
import socket

BLOCKED = ("arxiv.org", "huggingface.co")
_real_getaddrinfo = socket.getaddrinfo


def blocked(host: object) -> bool:
    """Whether `host` (str or bytes) is one of BLOCKED or a subdomain of one."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = str(host or "").lower().rstrip(".")
    return any(name == domain or name.endswith("." + domain) for domain in BLOCKED)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if blocked(host):
        log = os.environ.get("NETGUARD_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()} {host}\n")
        raise socket.gaierror(
            socket.EAI_NONAME, f"tests must not reach {host}: use tests/arxiv_server.py"
        )
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    """Guard this process (idempotent)."""
    socket.getaddrinfo = _guarded_getaddrinfo


install()
