"""The VERP return address and the short MAC under it (newsletter/bounces/verp.py, tokens.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter.bounces.verp import DeliveryRef, Verp
from newsletter.config import config_from_dict
from newsletter.config_email import VERP_TOKEN_MAX
from newsletter.errors import NewsletterError
from newsletter.model import Edition
from newsletter.tokens import sign_short, verify_short

SECRET = b"verp-test-secret"


@given(
    ident=st.integers(min_value=0, max_value=2**63 - 1),
    date=st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)),
    edition=st.sampled_from(list(Edition)),
)
def test_round_trip_within_the_local_part_limit(ident, date, edition):
    verp = Verp(SECRET, "bounces@example.org")
    address = verp.address(ident, f"{date:%Y%m%d}", edition.value)
    local = address.partition("@")[0]
    assert len(local) - len("bounces") <= VERP_TOKEN_MAX
    assert address == address.lower()
    assert verp.find(f"To: <{address}>") == DeliveryRef(ident, date, edition)
    assert verp.find(address.upper()) == DeliveryRef(ident, date, edition)  # case folded


def test_the_mac_is_tokens_sign_short():
    verp = Verp(SECRET, "bounces@example.org")
    address = verp.address(1234, "20250404", "ko")
    payload = "ya.20250404.ko"
    assert address == f"bounces+{payload}.{sign_short(SECRET, 'verp', payload)}@example.org"
    assert verify_short(SECRET, "verp", payload, sign_short(SECRET, "verp", payload).upper())
    assert not verify_short(SECRET, "unsubscribe", payload, sign_short(SECRET, "verp", payload))
    assert not verify_short(SECRET, "verp", payload, "é" * 16)


def test_only_genuine_addresses_of_this_bounce_address_are_found():
    verp = Verp(SECRET, "bounces@example.org")
    good = verp.address(7, "20250404", "en")
    local, _, domain = good.partition("@")
    wrong_mac = local[:-1] + ("2" if local[-1] != "2" else "3") + "@" + domain
    other_id = good.replace("bounces+7.", "bounces+8.")
    other_domain = good.replace("@example.org", "@example.net")
    other_local = good.replace("bounces+", "xbounces+")
    other_secret = Verp(b"other", "bounces@example.org").address(7, "20250404", "en")
    impossible_date = Verp(SECRET, "bounces@example.org").address(7, "20250230", "en")
    for text in (wrong_mac, other_id, other_domain, other_local, other_secret, impossible_date):
        assert verp.find(text) is None, text
    # Among several, the genuine one is found.
    assert verp.find(f"{wrong_mac} {other_secret} {good}") == DeliveryRef(
        7, dt.date(2025, 4, 4), Edition.EN
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("bounces+x@example.org", "without '+'"),
        ("Bounces <bounces@example.org>", "plain ASCII address"),
        ("바운스@example.org", "plain ASCII address"),
        ("a-very-long-bounce-local-part@example.org", "too long"),
        ("bounces", "plain ASCII address"),
    ],
)
def test_bad_bounce_addresses_are_config_errors(tmp_path, value, problem):
    with pytest.raises(NewsletterError) as caught:
        config_from_dict({"email": {"bounce_address": value}}, tmp_path)
    assert "email.bounce_address" in caught.value.message and problem in caught.value.message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("pop3://mail.example.org/INBOX", "is not a mailbox"),
        ("imaps://mail.example.org/INBOX", "needs a user and a host"),
        ("imap://bounces@mail.example.org:99999/INBOX", "not an IMAP URL"),
        ("maildir:", "no path"),
    ],
)
def test_bad_mailboxes_are_config_errors(tmp_path, value, problem):
    with pytest.raises(NewsletterError) as caught:
        config_from_dict({"bounces": {"mailbox": value}}, tmp_path)
    assert "bounces.mailbox" in caught.value.message and problem in caught.value.message


def test_mailbox_paths_are_relative_to_the_config(tmp_path):
    config = config_from_dict(
        {"bounces": {"mailbox": "mbox:mail/bounces", "ses_topic_arns": []}}, tmp_path
    )
    assert config.bounces.mailbox == f"mbox:{tmp_path / 'mail' / 'bounces'}"
    url = "imaps://bounces%40example.org@mail.example.org/Bounces"
    assert config_from_dict({"bounces": {"mailbox": url}}, tmp_path).bounces.mailbox == url


def test_imap_url_parts():
    from newsletter.bounces.mailboxes import ImapBox

    box = ImapBox("imaps://bounces%40example.org@mail.example.org/Bounces/2025", "pw")
    assert (box.tls, box.host, box.port, box.user, box.folder) == (
        True,
        "mail.example.org",
        993,
        "bounces@example.org",
        "Bounces/2025",
    )
    plain = ImapBox("imap://bounces@127.0.0.1", "pw")
    assert (plain.tls, plain.port, plain.folder) == (False, 143, "INBOX")
    assert "pw" not in plain.label
