"""`newsletter serve` against hostile clients: forged log lines and slow clients.

The real CLI in a subprocess (its log lines as an operator sees them), or
create_app under `server.uvicorn_settings` in a thread where a limit must be
small. Readiness and progress are read from the server's own log lines.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import resource
import signal
import socket
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS
from processes import Watched
from smtp_servers import free_port

SECRET = {"NEWSLETTER_SECRET": "serve-faults-secret-0123456789"}
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ ")


def serve_config(folder: Path, port: int) -> Path:
    config = folder / "config.yaml"
    config.write_text(
        f"site:\n  base_url: http://127.0.0.1:{port}/\n"
        f"paths:\n  digests: {SAMPLE_DIGESTS}\n  public: public\n  state: state\n"
        "  outbox: outbox\n",
        encoding="utf-8",
    )
    return config


def start_serve(folder: Path, **options) -> tuple[Watched, int]:
    port = free_port()
    server = Watched(
        serve_config(folder, port), "serve", "--port", str(port), env=SECRET, **options
    )
    assert server.wait_for_line("serving the subscription service"), "".join(server.lines)
    return server, port


def stop(server: Watched) -> str:
    server.process.send_signal(signal.SIGTERM)
    code, _, stderr = server.finish()
    assert code == 0, stderr
    return stderr


def raw_get(port: int, target: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


# --- the access log cannot be forged -------------------------------------------------------

HOSTILE_PATHS = {
    "/%0d%0a2099-01-01%2000:00:00%20INFO%20forged%20line": "/\\x0d\\x0a2099-01-01 00:00:00",
    "/%1b%5b2J%1b%5b31mred": "/\\x1b[2J\\x1b[31mred",
    "/nul%00byte": "/nul\\x00byte",
    "/line%e2%80%a8separator": "/line\\u2028separator",
    "/bidi%e2%80%aegnp.exe": "/bidi\\u202egnp.exe",
    "/c1%c2%9bcsi": "/c1\\x9bcsi",
    "/tab%09and%7fdel": "/tab\\x09and\\x7fdel",
}


def test_the_access_log_cannot_be_forged(tmp_path):
    server, port = start_serve(tmp_path)
    try:
        for target in HOSTILE_PATHS:
            assert raw_get(port, target) == 404
        assert raw_get(port, "/%ea%b0%80%eb%82%98-sentinel") == 404  # Hangul stays Hangul
        assert server.wait_for_line("가나-sentinel")
    finally:
        stderr = stop(server)
    lines = stderr.splitlines()
    assert all(STAMP.match(line) for line in lines), lines  # no line was forged
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]", stderr)
    for shown in HOSTILE_PATHS.values():
        assert shown in stderr, shown


def test_the_access_log_is_escaped_without_the_cli_too(tmp_path, monkeypatch, caplog):
    # A library user runs create_app under their own logging: the values are
    # escaped where the line is made, not only by the CLI's handler.
    with (
        caplog.at_level(logging.INFO, logger="newsletter.web"),
        _app_in_thread(tmp_path, monkeypatch) as port,
    ):
        # The block ends with the server's shutdown, after the request's log line.
        assert raw_get(port, "/%0d%0aforged%1b%5b2J") == 404
    messages = [r.getMessage() for r in caplog.records if r.name == "newsletter.web"]
    assert any("/\\x0d\\x0aforged\\x1b[2J" in m for m in messages), messages
    assert not any(re.search(r"[\x00-\x1f]", m) for m in messages)


def test_every_log_line_of_the_cli_escapes_what_it_quotes():
    from newsletter.errors import NewsletterError
    from newsletter.logs import EscapeControls
    from newsletter.model import Problem

    record = logging.makeLogRecord(
        {
            "name": "newsletter",
            "msg": "not published: %s; %s; %d; %s",
            "args": (
                Problem("digests/\x1b[2Jday.txt", 3, "bad line 'x\r\ny'"),
                NewsletterError("relay said 550\x1b[31m", hint="fix\nit"),
                7,
                "reply \u2028 two",
            ),
            "file": "digests/\x1bname",
        }
    )
    assert EscapeControls().filter(record)
    assert record.getMessage() == (
        "not published: digests/\\x1b[2Jday.txt:3: bad line 'x\\x0d\\x0ay'; "
        "relay said 550\\x1b[31m (hint: fix\\x0ait); 7; reply \\u2028 two"
    )
    assert record.file == "digests/\\x1bname"


def test_check_prints_digest_file_names_escaped(cli, tmp_path):
    (tmp_path / "bad\x1b[2J.txt").write_text("not a digest\n", encoding="utf-8")
    result = cli("check", str(tmp_path))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout and "bad\\x1b[2J.txt" in result.stdout


# --- slow clients ----------------------------------------------------------------------------


@contextlib.contextmanager
def _app_in_thread(folder: Path, monkeypatch, **limits):
    """create_app under the service's own uvicorn settings, in a thread; yields the port."""
    from helpers import serve_in_thread
    from test_web import SECRET as WEB_SECRET
    from test_web import make_config

    from newsletter.config import SECRET_ENV
    from newsletter.web.app import create_app
    from newsletter.web.safety import Limits
    from newsletter.web.server import uvicorn_settings

    monkeypatch.setenv(SECRET_ENV, WEB_SECRET)
    port = free_port()
    app = create_app(make_config(folder, port))
    with serve_in_thread(app, port, **uvicorn_settings(Limits(**limits))):
        yield port


@pytest.mark.parametrize(
    "half",
    [
        b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n",  # headers never end
        b"",  # says nothing at all
        b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nemail=a",  # slow body
    ],
)
def test_a_request_that_does_not_arrive_in_time_is_closed(tmp_path, monkeypatch, half):
    with _app_in_thread(tmp_path, monkeypatch, request_timeout=0.5) as port:
        slow = socket.create_connection(("127.0.0.1", port), timeout=60)
        slow.sendall(half)
        # Synchronised on the server closing the connection (60 s is only a safety bound).
        assert slow.recv(1024) == b""
        slow.close()
        assert raw_get(port, "/subscribe") == 200  # a whole request is served as before


def test_300_slow_clients_then_a_normal_request_is_answered(tmp_path):
    # A descriptor limit as a service manager sets one (LimitNOFILE=256): 300
    # half-sent requests used to take every descriptor, and then accept() failed.
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    server, port = start_serve(tmp_path, preexec_fn=low_limit)
    slow: list[socket.socket] = []
    try:
        for _ in range(300):
            client = socket.create_connection(("127.0.0.1", port), timeout=60)
            client.sendall(b"GET /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(client)
        assert raw_get(port, "/subscribe") == 200  # 60 s is only a safety bound
    finally:
        for client in slow:
            client.close()
        stderr = stop(server)
    lines = stderr.splitlines()
    assert "out of system resource" not in stderr
    assert len(lines) < 30, f"{len(lines)} log lines"  # no flood
    assert any("slow or idle clients" in line and "at the cap" in line for line in lines)


def test_a_repeated_error_is_logged_once_per_window():
    from newsletter.web.guard import RepeatLimiter

    now = [0.0]
    limiter = RepeatLimiter(window=60, clock=lambda: now[0])

    def record(msg: str, name: str = "asyncio") -> logging.LogRecord:
        return logging.makeLogRecord({"name": name, "msg": msg, "levelno": logging.ERROR})

    first = record("socket.accept() out of system resource")
    assert limiter.filter(first) and first.msg == "socket.accept() out of system resource"
    assert not any(
        limiter.filter(record("socket.accept() out of system resource")) for _ in range(500)
    )
    assert limiter.filter(record("something else"))  # another kind passes
    assert limiter.filter(record("socket.accept() out of system resource", "uvicorn.error"))
    now[0] = 60.0
    later = record("socket.accept() out of system resource")
    assert limiter.filter(later)
    assert later.msg.endswith("[and 500 more like it in 60 s]")


def test_the_connection_cap_stays_under_the_descriptor_limit():
    from newsletter.web.guard import RESERVED_DESCRIPTORS, descriptor_budget

    assert descriptor_budget(1000, 256) == (256 - RESERVED_DESCRIPTORS - 2 * 32, 32)
    assert descriptor_budget(1000, 1024) == (1024 - RESERVED_DESCRIPTORS - 2 * 128, 128)
    assert descriptor_budget(1000, 100_000) == (1000, 2048)
    assert descriptor_budget(1000, 64) == (1, 16)
    assert descriptor_budget(10, 256) == (10, 32)
    assert descriptor_budget(1000, resource.RLIM_INFINITY) == (1000, 2048)
