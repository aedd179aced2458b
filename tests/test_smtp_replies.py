"""The reply classification (`newsletter.smtp_replies`), rule by rule.

A pure function, so every rule and boundary is a row here: this is the test
the mutation run of the module (bench/mutation.sh) is measured against.
"""

from __future__ import annotations

import dataclasses

import pytest

from newsletter.smtp_replies import (
    TEMPORARY_STREAK,
    Scope,
    Stage,
    Verdict,
    classify,
    enhanced_code,
    learned_limit,
    session_worn_out,
)

MAIL, RCPT, DATA, END = Stage.MAIL, Stage.RCPT, Stage.DATA, Stage.END


def V(scope, permanent=False, bounce=False, session_limit=False):
    """An expected verdict as a plain tuple, with defaults of this test's own
    (not Verdict's: a changed default there must show here)."""
    return (scope, permanent, bounce, session_limit)


ACCEPTED = V(Scope.ACCEPTED)
SESSION_LIMIT = V(Scope.SESSION, session_limit=True)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("5.1.1 <a@b>: mailbox unavailable", (5, 1, 1)),
        ("4.5.3 Error: too many recipients", (4, 5, 3)),
        ("  2.0.0 Ok: queued", (2, 0, 0)),
        ("5.7.123 policy", (5, 7, 123)),
        ("5.3.4", (5, 3, 4)),
        ("3.1.1 not a class", None),  # only 2, 4 and 5 are classes (RFC 3463 §3.1)
        ("6.1.1 nor this", None),
        ("5.1.1234 detail too long", None),
        ("5.1234.1 subject too long", None),
        ("5.1.1.2 not a code", None),
        ("5.1 too short", None),
        ("Error 5.1.1 not first", None),
        ("", None),
        ("Too many recipients", None),
    ],
)
def test_enhanced_code(text, code):
    assert enhanced_code(text) == code


@pytest.mark.parametrize(
    ("stage", "code", "text", "verdict"),
    [
        # Accepted.
        (MAIL, 250, "2.1.0 Ok", ACCEPTED),
        (RCPT, 250, "2.1.5 Ok", ACCEPTED),
        (RCPT, 251, "User not local; will forward", ACCEPTED),
        (DATA, 354, "End data with <CR><LF>.<CR><LF>", ACCEPTED),
        (END, 250, "2.0.0 queued as 4F2", ACCEPTED),
        (END, 200, "", ACCEPTED),
        (END, 299, "", ACCEPTED),
        # 354 answers DATA only; anywhere else the session is confused.
        (END, 354, "", V(Scope.SESSION)),
        (RCPT, 354, "", V(Scope.SESSION)),
        (MAIL, 300, "", V(Scope.SESSION)),
        (END, 199, "", V(Scope.SESSION)),
        (END, 600, "", V(Scope.SESSION)),
        (END, 399, "", V(Scope.SESSION)),
        (RCPT, 400, "", V(Scope.RECIPIENT)),  # the lowest 4yz
        (END, 400, "", V(Scope.MESSAGE)),
        (END, 499, "", V(Scope.MESSAGE)),
        (END, 599, "", V(Scope.MESSAGE, True)),  # the highest 5yz
        # 421: the server closes the channel, whatever the command (RFC 5321 §3.8).
        (MAIL, 421, "4.7.0 Too many messages", SESSION_LIMIT),
        (RCPT, 421, "4.7.0 closing", SESSION_LIMIT),
        (DATA, 421, "", SESSION_LIMIT),
        (END, 421, "4.4.2 timeout", SESSION_LIMIT),
        # Too many recipients for this session (RFC 5321 §4.5.3.1.10).
        (RCPT, 452, "4.5.3 Error: too many recipients", SESSION_LIMIT),
        (RCPT, 452, "Too many recipients", SESSION_LIMIT),
        (RCPT, 452, "", SESSION_LIMIT),
        (RCPT, 452, "4.3.1 Insufficient system storage", SESSION_LIMIT),
        (RCPT, 552, "5.5.3 Too many recipients", SESSION_LIMIT),
        (RCPT, 552, "TOO MANY RECIPIENTS", SESSION_LIMIT),
        (RCPT, 451, "4.5.3 too many", SESSION_LIMIT),
        # ... but 452 with a recipient's status is the recipient's (Gmail's over-quota).
        (RCPT, 452, "4.2.2 The email account is over quota", V(Scope.RECIPIENT)),
        (RCPT, 452, "4.1.1 try later", V(Scope.RECIPIENT)),
        # The recipient's, at RCPT.
        (RCPT, 450, "4.7.1 greylisted, try again", V(Scope.RECIPIENT)),
        (RCPT, 451, "", V(Scope.RECIPIENT)),
        (RCPT, 550, "5.1.1 No such user", V(Scope.RECIPIENT, True, bounce=True)),
        (RCPT, 550, "No such user", V(Scope.RECIPIENT, True, bounce=True)),
        (RCPT, 552, "5.2.2 Mailbox full", V(Scope.RECIPIENT, True, bounce=True)),
        (RCPT, 553, "5.1.3 bad address syntax", V(Scope.RECIPIENT, True, bounce=True)),
        (RCPT, 599, "", V(Scope.RECIPIENT, True, bounce=True)),
        (RCPT, 500, "", V(Scope.RECIPIENT, True, bounce=True)),
        # A policy refusal is permanent but not a bounce of the mailbox.
        (RCPT, 554, "5.7.1 Relay access denied", V(Scope.RECIPIENT, True)),
        (RCPT, 550, "5.4.1 Recipient address rejected", V(Scope.RECIPIENT, True)),
        # MAIL: the sender's, unless the message's size or content is named.
        (MAIL, 553, "5.7.1 Sender address rejected", V(Scope.SENDER, True)),
        (MAIL, 550, "", V(Scope.SENDER, True)),
        (MAIL, 451, "4.3.0 try later", V(Scope.SENDER)),
        (MAIL, 552, "Error: message size exceeds fixed maximum", V(Scope.MESSAGE, True)),
        (MAIL, 552, "5.3.4 Message too big", V(Scope.MESSAGE, True)),
        (MAIL, 554, "5.3.4 Message too big", V(Scope.MESSAGE, True)),
        (MAIL, 554, "5.6.0 content refused", V(Scope.MESSAGE, True)),
        (MAIL, 452, "4.3.4 too big for now", V(Scope.MESSAGE)),
        (MAIL, 554, "5.3.0 other", V(Scope.SENDER, True)),
        (MAIL, 554, "5.2.4 other", V(Scope.SENDER, True)),
        # After DATA: the message, for everyone...
        (END, 552, "5.3.4 Message too big for system", V(Scope.MESSAGE, True)),
        (END, 554, "Transaction failed", V(Scope.MESSAGE, True)),
        (END, 550, "5.7.1 Message rejected as spam", V(Scope.MESSAGE, True)),
        (END, 500, "", V(Scope.MESSAGE, True)),
        (END, 451, "4.3.0 try again later", V(Scope.MESSAGE)),
        (END, 450, "4.1.1 later", V(Scope.MESSAGE)),
        (DATA, 554, "5.5.1 no valid recipients", V(Scope.MESSAGE, True)),
        (DATA, 451, "", V(Scope.MESSAGE)),
        # ... unless the status names the recipient (RFC 3463 X.1.x, X.2.x).
        (END, 550, "5.1.1 No such user", V(Scope.RECIPIENT, True, bounce=True)),
        (END, 552, "5.2.2 Mailbox full", V(Scope.RECIPIENT, True, bounce=True)),
        (DATA, 550, "5.1.1 No such user", V(Scope.RECIPIENT, True, bounce=True)),
    ],
)
def test_classify(stage, code, text, verdict):
    result = classify(stage, code, text)
    assert (result.scope, result.permanent, result.bounce, result.session_limit) == verdict
    assert isinstance(result, Verdict)


def test_a_verdict_is_a_frozen_value():
    verdict = classify(Stage.END, 250, "ok")
    assert verdict == Verdict(Scope.ACCEPTED) and hash(verdict) == hash(Verdict(Scope.ACCEPTED))
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.scope = Scope.SESSION  # type: ignore[misc]


def test_a_session_wears_out_after_a_streak_of_temporary_refusals():
    assert TEMPORARY_STREAK == 3
    assert [session_worn_out(n) for n in range(5)] == [False, False, False, True, True]


@pytest.mark.parametrize(
    ("accepted", "current", "limit"),
    [(100, 1000, 100), (1, 1000, 1), (0, 1000, 1), (1000, 100, 100), (99, 99, 99), (50, 49, 49)],
)
def test_learned_limit(accepted, current, limit):
    assert learned_limit(accepted, current) == limit
