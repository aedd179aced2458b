"""The links in our emails against what mail software really does with them.

Corporate mail gateways fetch every link of a message (HEAD and GET, several
times) before a person sees it; mail clients send the RFC 8058 one-click POST
in many shapes. Real uvicorn, real SQLite: the database file is read with the
sqlite3 module itself before and after each request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import sqlite3
import urllib.parse
from pathlib import Path

import pytest
from test_web import SECRET, Running, form_action, link_in, server

from newsletter.model import SubscriberState
from newsletter.tokens import UNSUBSCRIBE, sign_token

__all__ = ["server"]  # used as a fixture by name


def snapshot(running: Running) -> tuple[object, ...]:
    """Every row of every table, and every file of the outbox (name and hash)."""
    database = running.config.paths.state / "newsletter.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        names = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        tables = {
            name: sorted(map(repr, conn.execute(f'SELECT * FROM "{name}"'))) for name in names
        }
    outbox = running.config.paths.outbox
    files = sorted(
        (str(path.relative_to(outbox)), hashlib.sha256(path.read_bytes()).hexdigest())
        for path in outbox.rglob("*")
        if path.is_file()
    )
    return tuple(sorted(tables.items())), tuple(files)


def request(
    running: Running,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> http.client.HTTPResponse:
    """One raw HTTP request: exactly the headers given (http.client adds only Host,
    Accept-Encoding and the length)."""
    base = urllib.parse.urlsplit(running.client.base)
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
    path = target if target.startswith("/") else "/" + target
    if target.startswith("http"):
        split = urllib.parse.urlsplit(target)
        path = f"{split.path}?{split.query}" if split.query else split.path
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


def _unsubscribe_token(address: str) -> str:
    return sign_token(SECRET.encode(), UNSUBSCRIBE, address)


# --- 1. no GET or HEAD changes anything --------------------------------------------


def test_no_get_or_head_on_any_route_changes_anything(server: Running) -> None:
    """Every route of the app, found by walking app.routes (a new route is covered),
    fetched with HEAD and GET carrying every kind of valid token."""
    from starlette.routing import Mount, Route

    # Someone pending (with the real link from their email), someone active, someone who left.
    assert server.client.subscribe("pending@example.com", "both").status == 200
    confirm_query = urllib.parse.urlsplit(
        link_in(server.confirmation("pending@example.com"), "confirm")
    ).query
    with server.store() as store:
        store.subscribers.add("active@example.com", "en")
        store.subscribers.add("left@example.com", "ko")
        store.subscribers.remove("left@example.com")
    queries = ["", confirm_query]
    for address in ("pending@example.com", "active@example.com", "left@example.com"):
        token = _unsubscribe_token(address)
        queries += [f"token={token}", f"token={token}&edition=both"]
    # The published site, mounted last: a page, the manifest, a missing file.
    public = server.config.paths.public
    (public / "index.html").write_text("<p>home</p>", encoding="utf-8")
    (public / ".newsletter-manifest.json").write_text("{}", encoding="utf-8")
    site_paths = ["/", "/index.html", "/.newsletter-manifest.json", "/no/such/page"]

    paths: list[str] = []
    for route in server.app.routes:
        if isinstance(route, Route):
            paths.append(route.path)
        elif isinstance(route, Mount):
            paths += [route.path.rstrip("/") + p for p in site_paths]
        else:
            pytest.fail(f"a kind of route this test does not know: {route!r}")
    assert {"/subscribe", "/confirm", "/unsubscribe", "/preferences"} <= set(paths)
    assert {"/webhooks/ses", "/webhooks/mailgun", "/webhooks/bounces"} <= set(paths)

    before = snapshot(server)
    tried = 0
    for path in dict.fromkeys(paths):
        for query in queries:
            target = f"{path}?{query}" if query else path
            for method in ("HEAD", "GET", "GET", "HEAD"):  # scanners fetch more than once
                response = request(server, method, target)
                assert response.status < 500, (method, target, response.status)
                assert snapshot(server) == before, f"{method} {target} changed the database"
                tried += 1
    assert tried >= 4 * len(queries) * 5
    assert server.state("pending@example.com") is SubscriberState.PENDING
    assert server.state("active@example.com") is SubscriberState.ACTIVE


def test_confirmation_link_opens_a_page_whose_button_confirms(server: Running) -> None:
    # Every text that tells a person how to confirm names the button, in both languages.
    form = server.client.get("subscribe").text
    sent = server.client.subscribe("scanned@example.com", "ko").text
    mail = server.confirmation("scanned@example.com")
    texts = [form, sent] + [part.get_content() for part in mail.walk() if part.get_content_maintype() == "text"]  # fmt: skip
    for text in texts:
        assert "버튼을 누르" in text or "버튼을 눌러" in text, text
        assert "press the button" in text or "press Confirm" in text, text
    link = link_in(mail, "confirm")
    for method in ("HEAD", "GET", "HEAD", "GET"):
        assert request(server, method, link).status == 200
    assert server.state("scanned@example.com") is SubscriberState.PENDING
    page = server.client.get(link)
    assert page.status == 200 and page.text.count("<button") == 1
    assert "구독 확인" in page.text and "Confirm" in page.text
    assert "scanned@example.com" in page.text and "한국어 코멘트" in page.text
    assert page.headers["cache-control"] == "no-store"  # the page holds the token
    # The button: a POST to the signed link, no cookie needed (the token is the authority).
    reply = request(server, "POST", form_action(page.text), b"")
    assert reply.status == 200 and "구독이 시작되었습니다".encode() in reply.body
    assert server.state("scanned@example.com") is SubscriberState.ACTIVE


# --- 2. one-click unsubscribe from every client --------------------------------------

_MULTIPART = (
    b"--xyz\r\n"
    b'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
    b"One-Click\r\n"
    b"--xyz--\r\n"
)
_MULTIPART_FILE = (
    b"--xyz\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
    b"hello\r\n"
    b"--xyz--\r\n"
)
ONE_CLICK_BODIES = {
    "RFC 8058 form body": (b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded"),
    "empty, no Content-Type": (b"", None),
    "empty form": (b"", "application/x-www-form-urlencoded"),
    "text/plain": (b"List-Unsubscribe=One-Click", "text/plain; charset=utf-8"),
    "multipart": (_MULTIPART, "multipart/form-data; boundary=xyz"),
    "multipart with a file": (_MULTIPART_FILE, "multipart/form-data; boundary=xyz"),
    "multipart without a boundary": (b"whatever", "multipart/form-data"),
    "extra fields": (
        b"List-Unsubscribe=One-Click&source=gmail&csrf=not-ours",
        "application/x-www-form-urlencoded",
    ),
    "JSON": (b'{"List-Unsubscribe": "One-Click"}', "application/json"),
    "a body without Content-Type": (b"List-Unsubscribe=One-Click", None),
    "malformed form": (b"%%%=&&=%zz", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_one_click_unsubscribes_whatever_the_body(server: Running, chunked: bool) -> None:
    for n, (what, (body, content_type)) in enumerate(ONE_CLICK_BODIES.items()):
        address = f"reader{n}@example.com"
        with server.store() as store:
            store.subscribers.add(address, "both")
        headers = {"Content-Type": content_type} if content_type else {}
        response = request(
            server,
            "POST",
            f"unsubscribe?token={_unsubscribe_token(address)}",
            body,
            headers,
            chunked=chunked and bool(body),
        )
        assert response.status == 200, (what, response.status, response.body[:300])
        assert response.getheader("Location") is None, what
        assert "수신 거부되었습니다".encode() in response.body, what
        assert server.state(address) is SubscriberState.UNSUBSCRIBED, what


def test_one_click_needs_a_genuine_token(server: Running) -> None:
    with server.store() as store:
        store.subscribers.add("keep@example.com", "ko")
    forged = sign_token(b"not our secret", UNSUBSCRIBE, "keep@example.com")
    for target in (f"unsubscribe?token={forged}", "unsubscribe", "unsubscribe?token="):
        response = request(server, "POST", target, b"List-Unsubscribe=One-Click")
        assert response.status == 400, target
    assert server.state("keep@example.com") is SubscriberState.ACTIVE


# --- issue 14, 9. a confirmation link dies when the state it was issued for changes ------


def _later(server: Running, minutes: int = 1) -> None:
    server.clock[0] += dt.timedelta(minutes=minutes)


def _stale(server: Running, link: str) -> None:
    page = server.client.get(link)
    assert page.status == 400 and "이 링크는 더 이상 쓸 수 없습니다" in page.text
    assert "<button" not in page.text
    reply = request(server, "POST", link, b"")
    assert reply.status == 400 and b"This link can no longer be used" in reply.body


def test_a_link_from_before_an_unsubscribe_cannot_reactivate(server: Running) -> None:
    address = "changed.mind@example.com"
    server.client.subscribe(address, "ko")
    first = link_in(server.confirmation(address), "confirm")
    assert server.client.confirm(first).status == 200
    _later(server)
    assert request(server, "POST", f"unsubscribe?token={_unsubscribe_token(address)}").status == 200
    _later(server)
    # Anyone re-requests a sign-up for the address: pending again, a new link mailed.
    server.client.subscribe(address, "en")
    assert server.state(address) is SubscriberState.PENDING
    second = link_in(server.confirmation(address), "confirm")
    assert second != first
    _stale(server, first)  # the old link in the owner's mailbox (or a scanner's cache)
    assert server.state(address) is SubscriberState.PENDING
    assert server.client.confirm(second).status == 200
    with server.store() as store:
        sub = store.subscribers.get(address)
    assert sub.state is SubscriberState.ACTIVE and sub.edition.value == "en"


def test_a_pending_link_from_before_leaving_is_stale(server: Running) -> None:
    address = "never.confirmed@example.com"
    server.client.subscribe(address, "both")
    first = link_in(server.confirmation(address), "confirm")
    _later(server)
    # The confirmation mail's own unsubscribe link: pending -> unsubscribed.
    request(server, "POST", f"unsubscribe?token={_unsubscribe_token(address)}")
    assert server.state(address) is SubscriberState.UNSUBSCRIBED
    _stale(server, first)
    _later(server)
    server.client.subscribe(address, "both")
    _stale(server, first)
    assert server.state(address) is SubscriberState.PENDING


def test_asking_twice_while_pending_keeps_both_links(server: Running) -> None:
    address = "twice@example.com"
    server.client.subscribe(address, "ko")
    first = link_in(server.confirmation(address), "confirm")
    _later(server, 30)
    server.client.subscribe(address, "both")  # no state change: still pending
    assert server.client.confirm(first).status == 200
    with server.store() as store:
        assert store.subscribers.get(address).edition.value == "ko"


def test_confirm_survives_a_missing_state_time(server: Running, tmp_path: Path) -> None:
    """Rows written by hand (or before migration 4 filled them) have no state time."""
    address = "legacy@example.com"
    server.client.subscribe(address, "ko")
    link = link_in(server.confirmation(address), "confirm")
    with sqlite3.connect(server.config.paths.state / "newsletter.db") as conn:
        conn.execute("UPDATE subscribers SET state_changed_at = NULL")
    assert server.client.confirm(link).status == 200
    assert server.state(address) is SubscriberState.ACTIVE
