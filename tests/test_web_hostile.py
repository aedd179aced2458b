"""The web service against hostile input, on a real uvicorn: addresses that are
not addresses, and form fields no browser sends. A form never gets a 500.

The server fixture and the cookie-keeping client are test_web's.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest
import test_web
from helpers import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_web import Running, csrf_of

from newsletter.errors import NewsletterError
from newsletter.headers import check_address
from newsletter.store.subscribers import normalize_email
from newsletter.tokens import UNSUBSCRIBE, sign_token

server = test_web.server  # test_web's fixture: create_app under uvicorn in a thread
SECRET = test_web.SECRET
ENCODED_WORDS = [
    "=?utf-8?q?admin?=@example.org",
    "=?utf-8?q?a=0d=0aBcc:_victim@example.net?=@example.org",
    "=?utf-8?q?x=0d=0aBcc=3a_v=40evil.org?=@example.org",
    "=?UTF-8?B?7J2066aE?=@example.org",
    "=?us-ascii?Q?Support_Team?=@example.org",
    "x=?utf-8?q?y?=z@example.org",
]


@pytest.mark.parametrize("address", ENCODED_WORDS)
def test_encoded_word_addresses_are_refused_at_the_form(server: Running, address: str) -> None:
    # RFC 2047 §5: an encoded-word may not appear in an addr-spec. Decoded, it
    # would put any display text (or, with =0d=0a, a header) into the To line.
    reply = server.client.subscribe(address)
    assert reply.status == 400
    assert "올바른 이메일 주소" in reply.text and "Please enter a valid email address" in reply.text
    assert server.state(address) is None  # no pending row left behind
    assert not (server.config.paths.outbox / "confirmations").exists()


@pytest.mark.parametrize("address", ENCODED_WORDS)
def test_encoded_word_addresses_are_not_addresses_anywhere(address: str) -> None:
    with pytest.raises(NewsletterError, match="RFC 2047"):
        normalize_email(address)
    with pytest.raises(ValueError, match=r"RFC 2047|unsafe"):
        check_address(address)  # the per-recipient guard of every header and envelope
    assert check_address("ok=?@example.org").envelope == "ok=?@example.org"  # '=?' alone is fine


def test_the_cli_refuses_an_encoded_word_address(cli, project) -> None:
    added = run_cli("subscribers", "add", ENCODED_WORDS[2], cwd=project)
    assert added.returncode == 2 and "RFC 2047" in added.stderr  # usage: a bad argument
    assert "Traceback" not in added.stderr


# --- fuzzing the forms ---------------------------------------------------------------------

# Pieces of a form body no browser sends: control characters, NUL, broken and
# non-UTF-8 percent escapes, separators, long runs, Hangul, encoded-words.
HOSTILE = st.sampled_from(
    [
        "%0d%0a",
        "%0D%0ABcc:%20x@evil.org",
        "%00",
        "%ff",
        "%c3%28",
        "%e2%82",
        "%",
        "%zz",
        "%%",
        "&",
        "=",
        "+",
        "%1b[31m",
        "=?utf-8?q?a=0d=0a?=",
        "%EA%B0%80",
        "x" * 400,
        "@",
        ".",
        "example.org",
    ]
)
TEXT = st.text(max_size=40).map(lambda s: urllib.parse.quote_plus(s))
VALUE = st.lists(st.one_of(HOSTILE, TEXT), max_size=6).map("".join)
NAMES = st.sampled_from(["email", "edition", "csrf", "List-Unsubscribe", "x", "", "email[]"])
BODY = st.lists(st.tuples(NAMES, VALUE), max_size=6)

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _raw(fields: list[tuple[str, str]], csrf: str | None) -> bytes:
    pairs = ([("csrf", csrf)] if csrf else []) + fields
    return "&".join(f"{name}={value}" for name, value in pairs).encode("latin-1", "replace")


def _no_server_error(reply, what) -> None:
    assert reply.status < 500, (what, reply.status, reply.text[:300])
    assert "Traceback" not in reply.text


@FUZZ
@given(fields=BODY, with_csrf=st.booleans())
def test_no_sign_up_form_input_gets_a_500(server: Running, fields, with_csrf) -> None:
    csrf = csrf_of(server.client.get("subscribe").text) if with_csrf else None
    body = _raw(fields, csrf)
    _no_server_error(server.client.post("subscribe", body), body)


@FUZZ
@given(fields=BODY, query=VALUE, with_csrf=st.booleans())
def test_no_unsubscribe_or_preferences_input_gets_a_500(
    server: Running, fields, query, with_csrf
) -> None:
    token = sign_token(SECRET.encode(), UNSUBSCRIBE, "reader@example.com")
    for path in ("unsubscribe", "preferences"):
        page = server.client.get(f"{path}?token={token}")
        csrf = csrf_of(page.text) if with_csrf and 'name="csrf"' in page.text else None
        body = _raw(fields, csrf)
        for target in (f"{path}?token={token}", f"{path}?token={query}", f"{path}?{query}"):
            _no_server_error(server.client.post(target, body), (target, body))
            _no_server_error(server.client.get(target), target)


@FUZZ
@given(query=VALUE)
def test_no_confirmation_link_gets_a_500(server: Running, query) -> None:
    for target in (f"confirm?token={query}&edition=ko", f"confirm?{query}"):
        _no_server_error(server.client.get(target), target)


def test_an_over_long_address_is_a_form_error_not_a_crash(server: Running) -> None:
    for address in ("a" * 5000 + "@example.org", "a@" + "b" * 300 + ".org", "a" * 65 + "@x.org"):
        reply = server.client.subscribe(address)
        assert reply.status == 400, address
        assert re.search(r'aria-invalid="true"', reply.text)
