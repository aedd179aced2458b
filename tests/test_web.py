"""The subscription web service against a real server on localhost.

Most tests run `create_app` under uvicorn in a thread (fast, and the limits and
clock can be changed); the whole journey runs the real CLI (`newsletter serve`)
in a subprocess, and publishes real issues to the subscriber it signs up.
HTTP goes through urllib with a cookie jar, like a browser without JavaScript.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import http.client
import http.cookiejar
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from helpers import SAMPLE_DIGESTS, run_cli, serve_in_thread
from smtp_servers import free_port

from newsletter import tokens
from newsletter.config import SECRET_ENV, Config, config_from_dict
from newsletter.model import SubscriberState
from newsletter.store import Store
from newsletter.tokens import UNSUBSCRIBE, sign_token
from newsletter.transports.files import outbox_name
from newsletter.web.safety import Limits

SECRET = "test-secret-for-the-web-service-0123456789"
HANGUL = re.compile(r"[\uac00-\ud7a3]")

# --- an HTTP client with cookies that never follows redirects ------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


class Client:
    """A cookie-keeping HTTP client: GET and form POST, any status returned."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def _open(self, request: urllib.request.Request) -> Reply:
        try:
            with self.opener.open(request, timeout=10) as response:
                body, status, headers = response.read(), response.status, response.headers
        except urllib.error.HTTPError as exc:
            body, status, headers = exc.read(), exc.code, exc.headers
        return Reply(status, {k.lower(): v for k, v in headers.items()}, body.decode("utf-8"))

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path.lstrip("/")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self._open(urllib.request.Request(self.url(path), headers=headers or {}))

    def post(
        self, path: str, fields: dict[str, str] | bytes, headers: dict[str, str] | None = None
    ) -> Reply:
        data = fields if isinstance(fields, bytes) else urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.url(path),
            data=data,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )
        return self._open(request)

    def subscribe(self, address: str, edition: str = "both", **headers: str) -> Reply:
        form = self.get("subscribe")
        assert form.status == 200
        fields = {"csrf": csrf_of(form.text), "email": address, "edition": edition}
        return self.post("subscribe", fields, headers=headers)

    def confirm(self, link: str) -> Reply:
        """Open a confirmation link and press its page's one button, as a person does."""
        page = self.get(link)
        assert page.status == 200, page.text
        assert page.text.count("<button") == 1 and 'id="confirm"' in page.text
        return self.post(form_action(page.text), b"", headers={"Content-Type": ""})


def form_action(html: str) -> str:
    match = re.search(r'<form[^>]* method="post" action="([^"]+)"', html)
    assert match, "no POST form in the page"
    return match.group(1).replace("&amp;", "&")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field in the form"
    return match.group(1)


def read_eml(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def plain_body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return part.get_content()


def link_in(message: EmailMessage, path: str) -> str:
    match = re.search(rf"https?://\S+/{path}\?\S+", plain_body(message))
    assert match, f"no /{path} link in the email"
    return match.group(0)


# --- a server in a thread ----------------------------------------------------------------


def make_config(tmp_path: Path, port: int, **extra: object) -> Config:
    raw: dict[str, object] = {
        "site": {"title": "ML Papers", "base_url": f"http://127.0.0.1:{port}/"},
        "paths": {
            "digests": str(SAMPLE_DIGESTS),
            "public": "public",
            "state": "state",
            "outbox": "outbox",
        },
        "server": {"port": port, "public_url": f"http://127.0.0.1:{port}/"},
        "email": {"from": "ML Papers <papers@news.example.org>"},
        "papers": {"lookup": "off"},
        **extra,
    }
    return config_from_dict(raw, base=tmp_path)


@dataclass
class Running:
    config: Config
    client: Client
    clock: list[dt.datetime]
    app: Any = None  # the Starlette app being served

    def confirmation(self, address: str) -> EmailMessage:
        return read_eml(self.config.paths.outbox / "confirmations" / outbox_name(address))

    def state(self, address: str) -> SubscriberState | None:
        with Store.open(self.config) as store:
            sub = store.subscribers.get(address)
        return sub.state if sub else None

    def store(self) -> Store:
        return Store.open(self.config)


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Iterator[Running]:
    """create_app under uvicorn in a thread; other Limits by indirect parametrization."""
    from newsletter.web.app import create_app

    limits = getattr(request, "param", None) or Limits(per_ip=1000)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    # Every bounce webhook on, as a fully configured service has them (their
    # routes are among those the tests walk).
    monkeypatch.setenv("NL_TEST_WEBHOOK_SECRET", "generic-webhook-secret-0123456789")
    monkeypatch.setenv("NL_TEST_MAILGUN_KEY", "key-mailgun-signing-0123456789abcdef")
    port = free_port()
    config = make_config(
        tmp_path,
        port,
        bounces={
            "webhook_secret_env": "NL_TEST_WEBHOOK_SECRET",
            "mailgun_signing_key_env": "NL_TEST_MAILGUN_KEY",
            "ses_topic_arns": ["arn:aws:sns:eu-west-1:123456789012:newsletter-bounces"],
        },
    )
    clock = [dt.datetime.now(dt.UTC)]
    app = create_app(config, limits=limits, clock=lambda: clock[0])
    with serve_in_thread(app, port, proxy_headers=True, forwarded_allow_ips="127.0.0.1"):
        yield Running(config, Client(f"http://127.0.0.1:{port}/"), clock, app)


# --- the whole journey through the real CLI ----------------------------------------------


def _wait_until_up(client: Client, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120  # a hang guard: waits for the first answer
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if client.get("subscribe").status == 200:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("newsletter serve did not start")


def test_whole_journey_through_the_cli(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "config.yaml").write_text(
        "site:\n"
        f"  base_url: http://127.0.0.1:{port}/\n"
        "paths:\n"
        f"  digests: {SAMPLE_DIGESTS}\n"
        "  public: public\n  state: state\n  outbox: outbox\n"
        "papers:\n  lookup: off\n"
        "email:\n  from: ML Papers <papers@news.example.org>\n"
        f"server:\n  public_url: http://127.0.0.1:{port}/\n",
        encoding="utf-8",
    )
    config_file = str(tmp_path / "config.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {SECRET_ENV: SECRET, "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--config", config_file, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = Client(f"http://127.0.0.1:{port}/")
    address = "reader@example.com"
    try:
        _wait_until_up(client, process)
        # Sign up: a pending subscriber and a confirmation email in the outbox.
        reply = client.subscribe(address, "both")
        assert reply.status == 200 and "메일함을 확인하세요" in reply.text
        confirmation = read_eml(tmp_path / "outbox" / "confirmations" / outbox_name(address))
        assert confirmation["To"] == address
        assert client.confirm(link_in(confirmation, "confirm")).status == 200
        # Publish an issue: the newsletter email goes to the new subscriber.
        published = run_cli(
            "--config", config_file, "publish", "--date", "2025-04-04", "--force",
            env={SECRET_ENV: SECRET},
        )  # fmt: skip
        assert published.returncode == 0, published.stderr
        newsletter = read_eml(tmp_path / "outbox" / "2025-04-04" / outbox_name(address))
        assert newsletter["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click = re.search(r"<(https?://[^>]+)>", newsletter["List-Unsubscribe"]).group(1)
        # The site itself is served by the same process.
        home = client.get("")
        assert home.status == 200 and "'unsafe-inline'" in home.headers["content-security-policy"]
        assert client.get("both/2025-04-04/").status == 200
        # RFC 8058: exactly what a mail provider sends, with no cookie or CSRF token.
        provider = Client(client.base)
        reply = provider.post(one_click, b"List-Unsubscribe=One-Click")
        assert reply.status == 200 and "location" not in reply.headers
        listed = run_cli("--config", config_file, "subscribers", "list", "--json")
        assert '"state": "unsubscribed"' in listed.stdout
        # The next issue is not mailed to them.
        again = run_cli(
            "--config", config_file, "publish", "--date", "2025-05-19", "--force",
            env={SECRET_ENV: SECRET},
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert not (tmp_path / "outbox" / "2025-05-19" / outbox_name(address)).exists()
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "token=" not in err  # the access log leaves query strings (tokens) out


def test_serve_refuses_to_start_without_the_secret(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2  # a configuration error, as the README says
    assert "NEWSLETTER_SECRET is not set" in result.stderr and "hint:" in result.stderr
    assert "secrets.token_hex(32)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was created
    # With --log-format json the refusal is one JSON line too.
    result = run_cli("serve", "--log-format", "json", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    error = json.loads(line)
    assert error["level"] == "error" and "NEWSLETTER_SECRET is not set" in error["message"]
    assert "token_hex" in error["hint"]


def test_serve_names_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port), cwd=tmp_path, env={SECRET_ENV: SECRET})
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "--port" in result.stderr
    assert "Traceback" not in result.stderr


# --- sign-up ------------------------------------------------------------------------------


def test_subscribe_page_is_bilingual_with_strict_headers(server: Running) -> None:
    reply = server.client.get("subscribe")
    assert reply.status == 200
    assert '<html lang="ko">' in reply.text and 'lang="en"' in reply.text
    assert "구독하기" in reply.text and "Subscribe" in reply.text
    for edition in ("ko", "en", "both"):
        assert f'value="{edition}"' in reply.text
    csp = reply.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "<script" not in reply.text
    assert "<style" not in reply.text  # the stylesheet is a file: CSP needs no hash
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["cache-control"] == "no-store"
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    css = server.client.get("_web/style.css")
    assert css.status == 200 and "keep-all" in css.text and "Noto Sans KR" in css.text


def test_sign_up_and_confirm(server: Running) -> None:
    reply = server.client.subscribe("New.Reader@Example.com", "en")
    assert reply.status == 200 and "new.reader@example.com".lower() in reply.text.lower()
    assert server.state("new.reader@example.com") is SubscriberState.PENDING
    message = server.confirmation("New.Reader@example.com")
    assert message["From"] == "ML Papers <papers@news.example.org>"
    assert message["Message-ID"].endswith("@news.example.org>")
    assert message["Date"] and message["Auto-Submitted"] == "auto-generated"
    assert "구독 확인" in message["Subject"] and "Confirm" in message["Subject"]
    text = plain_body(message)
    assert HANGUL.search(text) and "open this link within 3 days and press Confirm" in text
    html = message.get_body(("html",)).get_content()
    assert "구독 확인" in html and message.get_body(("plain",)).get_content_charset() == "utf-8"
    confirm = link_in(message, "confirm")
    page = server.client.confirm(confirm)
    assert page.status == 200 and "구독이 시작되었습니다" in page.text
    with server.store() as store:
        sub = store.subscribers.get("new.reader@example.com")
    assert sub.state is SubscriberState.ACTIVE and sub.edition.value == "en"
    # Opening the link again is harmless: it says so, with no button.
    again = server.client.get(confirm)
    assert again.status == 200 and "구독이 시작되었습니다" in again.text
    assert "<button" not in again.text


def test_same_answer_for_known_and_unknown_addresses(server: Running) -> None:
    with server.store() as store:
        store.subscribers.add("known@example.com", "ko")  # active
    known = server.client.subscribe("known@example.com", "both")
    unknown = server.client.subscribe("unknown@example.com", "both")
    assert known.status == unknown.status == 200
    assert known.text.replace("known@", "X@") == unknown.text.replace("unknown@", "X@")
    # The active subscriber is unchanged, and told so by email (not on the page).
    with server.store() as store:
        sub = store.subscribers.get("known@example.com")
    assert sub.state is SubscriberState.ACTIVE and sub.edition.value == "ko"
    note = server.confirmation("known@example.com")
    assert "이미" in note["Subject"] and "already subscribed" in note["Subject"]
    assert "/preferences?token=" in plain_body(note)
    assert server.state("unknown@example.com") is SubscriberState.PENDING


def test_unsubscribed_address_comes_back_through_double_opt_in(server: Running) -> None:
    with server.store() as store:
        store.subscribers.add("left@example.com", "ko")
        store.subscribers.remove("left@example.com")
    assert server.client.subscribe("left@example.com", "ko").status == 200
    assert server.state("left@example.com") is SubscriberState.PENDING
    server.client.confirm(link_in(server.confirmation("left@example.com"), "confirm"))
    assert server.state("left@example.com") is SubscriberState.ACTIVE


def test_invalid_address_is_escaped_in_the_form(server: Running) -> None:
    evil = '<script>alert("x")</script>@example.com'
    reply = server.client.subscribe(evil)
    assert reply.status == 400
    assert "<script>" not in reply.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;@example.com" in reply.text
    assert "올바른 이메일 주소" in reply.text and 'aria-invalid="true"' in reply.text


def test_unknown_edition_is_refused(server: Running) -> None:
    assert server.client.subscribe("a@example.com", "fr").status == 400
    assert server.state("a@example.com") is None


# --- tokens ----------------------------------------------------------------------------------


def test_forged_expired_and_edited_confirmation_links(server: Running) -> None:
    server.client.subscribe("wait@example.com", "ko")
    good = link_in(server.confirmation("wait@example.com"), "confirm")
    forged = tokens.sign_expiring(
        b"another secret", "confirm:ko", "wait@example.com", server.clock[0]
    )
    for url, phrase in [
        (f"confirm?token={forged}&edition=ko", "링크가 올바르지 않습니다"),
        (good.replace("edition=ko", "edition=both"), "링크가 올바르지 않습니다"),
        ("confirm?token=%C3%A9.%C3%A9.1&edition=ko", "This link is not valid"),
        ("confirm", "This link is not valid"),
    ]:
        reply = server.client.get(url)
        assert reply.status == 400, url
        assert phrase in reply.text and "Traceback" not in reply.text
    for url, _ in [(f"confirm?token={forged}&edition=ko", ""), ("confirm", "")]:
        assert server.client.post(url, b"").status == 400, url
    server.clock[0] += tokens.CONFIRM_MAX_AGE + dt.timedelta(minutes=1)
    for reply in (server.client.get(good), server.client.post(good, b"")):
        assert reply.status == 400 and "링크가 만료되었습니다" in reply.text
        assert "This link has expired" in reply.text
    assert server.state("wait@example.com") is SubscriberState.PENDING


def test_forged_unsubscribe_tokens_get_a_friendly_page(server: Running) -> None:
    forged = sign_token(b"another secret", UNSUBSCRIBE, "someone@example.com")
    for path in (f"unsubscribe?token={forged}", "unsubscribe", "unsubscribe?token=%E2%98%83"):
        get = server.client.get(path)
        post = server.client.post(path, b"List-Unsubscribe=One-Click")
        assert get.status == post.status == 400
        assert "링크가 올바르지 않습니다" in post.text and "Traceback" not in post.text


def test_expiring_token_units() -> None:
    now = dt.datetime(2025, 4, 4, 7, tzinfo=dt.UTC)
    token = tokens.sign_expiring(b"k", "confirm:ko", "a@example.com", now)
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)
    assert tokens.verify_expiring(b"k", "confirm:ko", token, now + dt.timedelta(days=2)) == (
        "a@example.com"
    )
    with pytest.raises(tokens.ExpiredToken) as expired:
        tokens.verify_expiring(b"k", "confirm:ko", token, now + dt.timedelta(days=3, seconds=1))
    assert expired.value.address == "a@example.com"
    payload, _, issued = token.rpartition(".")
    for bad in (
        f"{payload}.{int(issued) + 86400}",  # a later issue time: MAC breaks
        token[:-3],
        "",
        "é",
    ):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify_expiring(b"k", "confirm:ko", bad, now)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_expiring(b"k", "confirm:en", token, now)  # another purpose
    with pytest.raises(tokens.InvalidToken):
        tokens.verify_expiring(b"k", "confirm:ko", token, now - dt.timedelta(hours=1))
    nonce = tokens.new_csrf_nonce()
    assert tokens.csrf_valid(b"k", nonce, tokens.csrf_token(b"k", nonce))
    assert not tokens.csrf_valid(b"k", tokens.new_csrf_nonce(), tokens.csrf_token(b"k", nonce))
    assert not tokens.csrf_valid(b"k", "é", "é")


# --- unsubscribe and preferences ---------------------------------------------------------------


def _active(server: Running, address: str, edition: str = "ko") -> str:
    with server.store() as store:
        store.subscribers.add(address, edition)
    return sign_token(SECRET.encode(), UNSUBSCRIBE, address)


def test_get_unsubscribe_changes_nothing_and_the_button_does(server: Running) -> None:
    token = _active(server, "stay@example.com")
    page = server.client.get(f"unsubscribe?token={token}")
    assert page.status == 200 and "수신 거부" in page.text and "stay@example.com" in page.text
    assert page.text.count("<button") == 1
    assert server.state("stay@example.com") is SubscriberState.ACTIVE
    # The button: a form POST to the signed link.
    reply = server.client.post(form_action(page.text), {})
    assert reply.status == 200 and "수신 거부되었습니다" in reply.text
    assert server.state("stay@example.com") is SubscriberState.UNSUBSCRIBED


def test_csrf_failures_are_403(server: Running) -> None:
    token = _active(server, "victim@example.com")
    # No cookie, no token: a cross-site form post.
    stranger = Client(server.client.base)
    assert stranger.post("subscribe", {"email": "x@example.com", "edition": "ko"}).status == 403
    # A token made for another browser's cookie.
    other = Client(server.client.base)
    foreign = csrf_of(other.get("subscribe").text)
    server.client.get("subscribe")
    reply = server.client.post(
        "subscribe", {"csrf": foreign, "email": "x@example.com", "edition": "ko"}
    )
    assert reply.status == 403 and "양식이 만료되었습니다" in reply.text
    # The preferences form without its CSRF token.
    reply = stranger.post(f"preferences?token={token}", {"edition": "both"})
    assert reply.status == 403
    with server.store() as store:
        assert store.subscribers.get("victim@example.com").edition.value == "ko"
    assert server.state("x@example.com") is None


def test_preferences_change_the_edition(server: Running) -> None:
    token = _active(server, "prefs@example.com", "ko")
    page = server.client.get(f"preferences?token={token}")
    assert page.status == 200 and "구독 설정" in page.text
    assert 'value="ko" checked' in page.text
    reply = server.client.post(
        f"preferences?token={token}", {"csrf": csrf_of(page.text), "edition": "both"}
    )
    assert reply.status == 200 and "설정을 저장했습니다" in reply.text
    with server.store() as store:
        assert store.subscribers.get("prefs@example.com").edition.value == "both"


# --- abuse bounds and errors ----------------------------------------------------------------------


@pytest.mark.parametrize("server", [Limits(per_ip=1000, per_address=3)], indirect=True)
def test_sign_ups_per_address_are_bounded(server: Running) -> None:
    for _ in range(3):
        assert server.client.subscribe("flood@example.com").status == 200
    reply = server.client.subscribe("FLOOD@example.com")
    assert reply.status == 429 and "요청이 너무 많습니다" in reply.text
    assert int(reply.headers["retry-after"]) > 0
    assert server.client.subscribe("other@example.com").status == 200


@pytest.mark.parametrize("server", [Limits(per_ip=3, per_address=100)], indirect=True)
def test_sign_ups_per_ip_are_bounded_behind_a_proxy(server: Running) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (a local reverse proxy).
    proxy = {"X-Forwarded-For": "203.0.113.7"}
    for n in range(3):
        assert server.client.subscribe(f"r{n}@example.com", **proxy).status == 200
    assert server.client.subscribe("r9@example.com", **proxy).status == 429
    other = {"X-Forwarded-For": "198.51.100.1"}
    assert server.client.subscribe("r9@example.com", **other).status == 200


def test_oversize_bodies_get_413(server: Running) -> None:
    page = server.client.get("subscribe")
    big = {"csrf": csrf_of(page.text), "email": "a@example.com", "pad": "x" * 20_000}
    reply = server.client.post("subscribe", big)
    assert reply.status == 413 and "요청이 너무 큽니다" in reply.text
    # Chunked, so no Content-Length to look at: counted as it streams.
    host, port = "127.0.0.1", int(server.client.base.rsplit(":", 1)[1].strip("/"))
    conn = http.client.HTTPConnection(host, port, timeout=10)
    chunks = (b"email=" + b"a" * 4096 for _ in range(8))
    conn.request(
        "POST",
        "/subscribe",
        body=chunks,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        encode_chunked=True,
    )
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_errors_are_friendly_pages_without_internals(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = server.client.get("no/such/page")
    assert missing.status == 404 and "페이지를 찾을 수 없습니다" in missing.text
    assert "default-src 'none'" in missing.headers["content-security-policy"]
    assert server.client.post("_web/style.css", {}).status == 405

    from newsletter.web import subscriptions

    def broken(*_args: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(subscriptions.Subscriptions, "request", broken)
    reply = server.client.subscribe("boom@example.com")
    assert reply.status == 500 and "문제가 생겼습니다" in reply.text
    assert "hunter2" not in reply.text and "Traceback" not in reply.text
    assert reply.headers["x-content-type-options"] == "nosniff"


def test_sliding_window_forgets_old_events() -> None:
    from newsletter.web.safety import SlidingWindow

    now = [1000.0]
    window = SlidingWindow(2, 60, max_keys=3, clock=lambda: now[0])
    window.add("a")
    window.add("a")
    assert window.full("a") and not window.full("b")
    assert 0 < window.retry_after("a") <= 61
    now[0] += 61
    assert not window.full("a")
    for key in "bcde":
        window.add(key)
    assert len(window._events) == 3  # memory stays bounded
