"""tokens.py: expiring and CSRF tokens, at their boundaries (one second inside,
one second outside), with input from the outside world (empty, non-ASCII,
over-long)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac

import pytest

from newsletter import tokens
from newsletter.tokens import (
    CONFIRM_MAX_AGE,
    UNSUBSCRIBE,
    ExpiredToken,
    InvalidToken,
    csrf_token,
    csrf_valid,
    issued_at,
    new_csrf_nonce,
    sign_expiring,
    sign_short,
    sign_token,
    verify_address,
    verify_expiring,
    verify_short,
    verify_token,
    well_formed,
)

KEY = b"test-key"
NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
SKEW = dt.timedelta(minutes=5)


def token(now=NOW, address="kim@example.org", purpose="confirm:ko"):
    return sign_expiring(KEY, purpose, address, now)


def test_round_trip_carries_the_issue_time_in_clear():
    t = token()
    assert t.endswith(f".{int(NOW.timestamp())}")
    assert verify_expiring(KEY, "confirm:ko", t, NOW) == "kim@example.org"
    assert verify_expiring(KEY, "confirm:ko", token(address="김@한국.kr"), NOW) == "김@한국.kr"


def test_expiry_boundary():
    # A confirmation link is good for three days (the web pages say so).
    assert dt.timedelta(days=3) == CONFIRM_MAX_AGE
    t = token()
    three_days = dt.timedelta(days=3)
    assert verify_expiring(KEY, "confirm:ko", t, NOW + three_days) == "kim@example.org"
    with pytest.raises(ExpiredToken) as expired:
        verify_expiring(KEY, "confirm:ko", t, NOW + three_days + SECOND)
    assert expired.value.address == "kim@example.org"
    assert str(expired.value) == "expired token for kim@example.org"


def test_a_shorter_max_age_is_honoured():
    t = token()
    hour = dt.timedelta(hours=1)
    assert verify_expiring(KEY, "confirm:ko", t, NOW + hour, max_age=hour)
    with pytest.raises(ExpiredToken):
        verify_expiring(KEY, "confirm:ko", t, NOW + hour + SECOND, max_age=hour)


def test_clock_skew_boundary():
    # Issued by a server whose clock runs ahead of ours: up to 5 minutes is fine.
    t = token(NOW + SKEW)
    assert verify_expiring(KEY, "confirm:ko", t, NOW) == "kim@example.org"
    with pytest.raises(InvalidToken, match=r"^issued in the future$"):
        verify_expiring(KEY, "confirm:ko", token(NOW + SKEW + SECOND), NOW)


def test_a_changed_issue_time_breaks_the_signature():
    t = token()
    signed, _, issued = t.rpartition(".")
    for other in (int(issued) + 1, int(issued) - 86400):
        with pytest.raises(InvalidToken, match=r"^bad signature$"):
            verify_expiring(KEY, "confirm:ko", f"{signed}.{other}", NOW)
    with pytest.raises(InvalidToken, match=r"^bad signature$"):
        verify_expiring(b"other key", "confirm:ko", t, NOW)
    with pytest.raises(InvalidToken, match=r"^bad signature$"):
        verify_expiring(KEY, "confirm:en", t, NOW)


@pytest.mark.parametrize(
    "bad",
    [
        "",  # empty
        "abc",  # no issue time
        "abc.",  # empty issue time
        "abc.12x",  # not digits
        "abc.-5",  # a sign is not a digit
        "abc.1234567890123",  # 13 digits: longer than any time we issue
        "김철수.1743724800",  # non-ASCII
        "abc def.1743724800",  # a space
        "a" * 990 + ".1743724800",  # 1,001 characters
        "é.é.1",
    ],
)
def test_malformed_tokens_are_invalid_not_errors(bad):
    with pytest.raises(InvalidToken, match=r"^malformed token$"):
        verify_expiring(KEY, "confirm:ko", bad, NOW)


def test_twelve_digit_issue_time_is_read_not_refused():
    # 12 digits is the limit of a well-formed time (year 33658): signed with
    # another time it is a bad signature, not a malformed token.
    signed = token().rpartition(".")[0]
    with pytest.raises(InvalidToken, match=r"^bad signature$"):
        verify_expiring(KEY, "confirm:ko", f"{signed}.{'9' * 12}", NOW)


def test_far_future_issue_time_is_in_the_future():
    far = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(InvalidToken, match=r"^issued in the future$"):
        verify_expiring(KEY, "confirm:ko", token(far), NOW)


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match=r"^now must be timezone-aware$"):
        sign_expiring(KEY, "confirm:ko", "a@example.org", dt.datetime(2025, 4, 4))
    with pytest.raises(ValueError, match=r"^now must be timezone-aware$"):
        verify_expiring(KEY, "confirm:ko", token(), dt.datetime(2025, 4, 4))


def test_well_formed_limits():
    assert well_formed("a") and well_formed("A-z_0.9") and well_formed("a" * 1000)
    for bad in (None, "", "a" * 1001, "a b", "a/b", "a=", "김", "a\n"):
        assert not well_formed(bad), bad


def test_verify_address_takes_request_input_without_raising():
    good = sign_token(KEY, "unsubscribe", "kim@example.org")
    assert verify_address(KEY, "unsubscribe", good) == "kim@example.org"
    for bad in (None, "", "김철수", "%E2%98%83", good + "x", "a" * 1001):
        assert verify_address(KEY, "unsubscribe", bad) is None
    assert verify_address(KEY, "confirm", good) is None
    # Genuine but longer than any token of ours may be (an 800-character address):
    # refused before verifying, like anything else not well formed.
    long_address = "x" * 780 + "@example.org"
    too_long = sign_token(KEY, "unsubscribe", long_address)
    assert len(too_long) > 1000
    assert verify_address(KEY, "unsubscribe", too_long) is None


def test_the_purpose_names_are_part_of_every_token_already_sent():
    # Confirmation links and CSRF fields sign these names: changing one would
    # invalidate every link already in someone's inbox.
    assert (tokens.CONFIRM, tokens.CSRF) == ("confirm", "csrf")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_unsubscribe_tokens_already_sent_keep_verifying():
    # The unsubscribe link of every email already sent: base64url(address) "."
    # base64url(first 18 bytes of HMAC-SHA256(secret, "unsubscribe" NUL payload)),
    # computed here from that description, not by the module.
    address = "김철수@example.org"
    payload = _b64(address.encode())
    mac = hmac.new(KEY, f"unsubscribe\0{payload}".encode(), hashlib.sha256).digest()[:18]
    sent = f"{payload}.{_b64(mac)}"
    assert sign_token(KEY, UNSUBSCRIBE, address) == sent
    assert verify_token(KEY, UNSUBSCRIBE, sent) == address


def test_short_macs_in_return_addresses_already_sent_keep_verifying():
    # A bounce can come back days after its message: the VERP MAC is the first
    # 8 bytes of HMAC-SHA256(secret, purpose NUL payload), in lowercase hex.
    payload = "ya.20250404.ko"
    mac = hmac.new(KEY, f"verp\0{payload}".encode(), hashlib.sha256).digest()[:8].hex()
    assert sign_short(KEY, "verp", payload) == mac
    assert verify_short(KEY, "verp", payload, mac.upper())
    assert not verify_short(KEY, "verp", payload, mac[:-1])
    assert not verify_short(KEY, "verp", "ya.20250404.en", mac)


def test_issued_at_reads_the_clear_issue_time():
    assert issued_at(token()) == NOW
    assert issued_at(token(NOW - dt.timedelta(days=2))) == NOW - dt.timedelta(days=2)
    # 12 digits is the longest time read (year 5138 here), 13 is refused.
    assert issued_at("abc.100000000000") == dt.datetime(5138, 11, 16, 9, 46, 40, tzinfo=dt.UTC)
    for bad in ("1743724800", "abc", "abc.", "abc.12x", "abc.-5", "abc.1000000000000"):
        with pytest.raises(InvalidToken, match=r"^malformed token$"):
            issued_at(bad)


def test_csrf_double_submit():
    nonce = new_csrf_nonce()
    assert well_formed(nonce) and len(nonce) == 24 and nonce != new_csrf_nonce()
    form = csrf_token(KEY, nonce)
    assert csrf_valid(KEY, nonce, form)
    assert not csrf_valid(KEY, new_csrf_nonce(), form)  # another browser's cookie
    assert not csrf_valid(b"other key", nonce, form)
    assert not csrf_valid(KEY, nonce, sign_token(KEY, "unsubscribe", nonce))  # other purpose
    for cookie, field in ((None, form), ("", form), (nonce, None), (nonce, ""), ("김", form)):
        assert not csrf_valid(KEY, cookie, field)
