"""What each kind of message in a bounce mailbox is taken for (newsletter/bounces/classify.py).

The samples are tests/data/bounces/*.eml, filled in for a real subscriber of a
real SQLite store who was sent the issue (tests/bounce_samples.py).
"""

from __future__ import annotations

import pytest
from bounce_samples import DATE, SECRET, make_world

from newsletter.bounces.classify import Kind
from newsletter.bounces.process import classifier_for
from newsletter.bounces.verp import Verp
from newsletter.model import Edition


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    world = make_world(tmp_path)
    yield world
    world.store.close()


def classify(world, data):
    return classifier_for(world.config, world.store).classify(data)


READER = "reader2@example.net"  # the 'en' edition


@pytest.mark.parametrize(
    ("sample", "kind", "status"),
    [
        ("postfix-hard", Kind.HARD, "5.1.1"),
        ("postfix-delayed", Kind.SOFT, "4.2.2"),
        ("exim-hard", Kind.HARD, "5.1.1"),
        ("exchange-hard", Kind.HARD, "5.1.1"),
        ("webmail-hard", Kind.HARD, "5.1.1"),
        ("arf-complaint", Kind.COMPLAINT, ""),
        ("arf-redacted", Kind.COMPLAINT, ""),
        ("vacation-rfc3834", Kind.AUTO_REPLY, ""),
        ("vacation-subject", Kind.AUTO_REPLY, ""),
    ],
)
def test_each_report_names_its_delivery(world, sample, kind, status):
    verdict = classify(world, world.sample(sample, READER))
    assert verdict.kind is kind, verdict.why
    assert verdict.email == READER
    # The issue and edition come from the VERP token, or (redacted ARF) from
    # our Message-ID in the returned headers, checked against the ledger.
    assert (verdict.date, verdict.edition) == (DATE, Edition.EN)
    assert verdict.status == status
    assert verdict.acted_on


def test_diagnostics_are_the_servers_words(world):
    postfix = classify(world, world.sample("postfix-hard", READER))
    assert postfix.diagnostic.startswith("550 5.1.1 <reader2@example.net>: Recipient address")
    assert "User unknown in virtual mailbox table" in " ".join(postfix.diagnostic.split())
    exim = classify(world, world.sample("exim-hard", READER))
    assert exim.diagnostic == "550 5.1.1 No such user here"
    exchange = classify(world, world.sample("exchange-hard", READER))
    assert exchange.diagnostic.endswith("smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found>")
    webmail = classify(world, world.sample("webmail-hard", READER))
    assert "does not exist" in webmail.diagnostic
    arf = classify(world, world.sample("arf-complaint", READER))
    assert arf.diagnostic == "Feedback-Type: abuse; User-Agent: ExampleFBL/2.1"


def test_mailto_unsubscribe_with_a_valid_token(world):
    verdict = classify(world, world.sample("unsubscribe", READER))
    assert verdict.kind is Kind.UNSUBSCRIBE
    assert verdict.email == READER
    assert verdict.date is None  # a request, not about one delivery


def test_a_forged_unsubscribe_token_is_not_acted_on(world):
    good = world.token(READER)
    payload, _, mac = good.partition(".")
    # Someone else's address with our MAC, or a MAC off by one character.
    other = world.token("reader3@example.net").partition(".")[0]
    for forged in (f"{other}.{mac}", f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"):
        verdict = classify(world, world.sample("unsubscribe", READER, **{"@@TOKEN@@": forged}))
        assert verdict.kind is Kind.UNKNOWN and not verdict.acted_on


def test_a_forged_verp_address_is_not_acted_on(world):
    verp = world.verp(READER)
    local, at, domain = verp.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + at + domain
    # Remove every other trace of the delivery: only the (bad) VERP is left.
    data = world.sample(
        "postfix-hard",
        READER,
        **{"@@VERP@@": forged, "@@ORIGINAL_HEADERS@@": "Subject: something"},
    )
    verdict = classify(world, data)
    assert verdict.kind is Kind.UNKNOWN and "token" in verdict.why


def test_a_token_for_another_secret_is_not_acted_on(world):
    sub = world.store.subscribers.get(READER)
    other = Verp(b"another-secret", "bounces@example.org").address(sub.id, "20250404", "en")
    data = world.sample(
        "exim-hard", READER, **{"@@VERP@@": other, "@@ORIGINAL_HEADERS@@": "Subject: x"}
    )
    assert classify(world, data).kind is Kind.UNKNOWN


@pytest.mark.parametrize("sample", ["unrelated", "unrelated-bounce"])
def test_unrelated_mail_is_unknown(world, sample):
    data = world.sample(sample, READER)
    verdict = classify(world, data)
    assert verdict.kind is Kind.UNKNOWN and not verdict.acted_on
    assert verdict.email is None


def test_a_vacation_reply_is_never_a_bounce_even_with_bounce_words(world):
    # An auto-reply whose subject says "undeliverable" and whose sender is a
    # daemon is still not a failure report when it has no failure in it.
    data = world.sample("vacation-rfc3834", READER).replace(
        b"Subject: Auto: ", b"Subject: Auto: Undeliverable? "
    )
    verdict = classify(world, data)
    assert verdict.kind is Kind.AUTO_REPLY


def test_dsn_positive_actions_are_notices(world):
    data = world.sample("postfix-hard", READER).replace(b"Action: failed", b"Action: delivered")
    data = data.replace(b"Status: 5.1.1", b"Status: 2.0.0")
    assert classify(world, data).kind is Kind.NOTICE


def test_a_failed_dsn_with_a_4xx_status_is_soft(world):
    data = world.sample("postfix-hard", READER).replace(b"Status: 5.1.1", b"Status: 4.4.7")
    verdict = classify(world, data)
    assert (verdict.kind, verdict.status) == (Kind.SOFT, "4.4.7")


@pytest.mark.parametrize("feedback", ["not-spam", "auth-failure"])
def test_feedback_that_is_not_a_complaint_is_left(world, feedback):
    data = world.sample("arf-complaint", READER).replace(
        b"Feedback-Type: abuse", f"Feedback-Type: {feedback}".encode()
    )
    assert classify(world, data).kind is Kind.UNKNOWN


def test_the_verp_survives_case_folding(world):
    data = world.sample("postfix-hard", READER, **{"@@VERP@@": world.verp(READER).upper()})
    data = data.replace(world.token(READER).encode(), b"gone")  # only the VERP left
    verdict = classify(world, data)
    assert (verdict.kind, verdict.email, verdict.edition) == (Kind.HARD, READER, Edition.EN)


def test_refs_count_a_delivery_once_whatever_the_path(world):
    postfix = classify(world, world.sample("postfix-hard", READER))
    exchange = classify(world, world.sample("exchange-hard", READER))
    assert exchange.diagnostic.endswith("smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found>")
    webmail = classify(world, world.sample("webmail-hard", READER))
    assert postfix.ref == webmail.ref  # the same delivery's hard bounce
    other = classify(world, world.sample("postfix-hard", "reader3@example.net"))
    assert other.ref != postfix.ref


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: message/delivery-status\r\n\r\nAction",
    ],
)
def test_broken_input_is_unknown_not_an_error(world, junk):
    assert classify(world, junk).kind is Kind.UNKNOWN


def test_a_redacted_complaint_is_tied_by_the_list_unsubscribe_token(world):
    headers = world.sent_message(READER).replace(b"\r\n", b"\n").decode().partition("\n\n")[0]
    redacted = "\n".join(
        "To: redacted@fbl.example.com" if line.startswith("To:") else line
        for line in headers.split("\n")
    )
    assert READER not in redacted.split("List-Unsubscribe")[0]
    verdict = classify(
        world, world.sample("arf-redacted", READER, **{"@@ORIGINAL_HEADERS@@": redacted})
    )
    assert verdict.kind is Kind.COMPLAINT and verdict.email == READER
    assert "unsubscribe token" in verdict.why
    assert (verdict.date, verdict.edition) == (DATE, Edition.EN)  # by our Message-ID
