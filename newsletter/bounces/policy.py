"""What an event does to its subscriber, and how an operator undoes it.

- A hard bounce (RFC 3463 class 5) adds one to the subscriber's count, over
  all issues; at `email.bounce_limit` an active (or pending) subscriber
  becomes `bounced`.
- A soft bounce (class 4, a delay) is stored and shown, never acted on.
- A complaint (RFC 5965 feedback report) makes the subscriber `complained` at
  once, whatever its state: nobody who called the mail spam gets another.
- A mailto unsubscribe makes an active, pending or bounced subscriber
  `unsubscribed` (a complaint stays a complaint).
- `reactivate` makes a subscriber active again with no bounces counted; for
  a complaint only with `force`. It is an event too, so the log shows who
  undid what.

Every rule runs inside `BounceEvents.record`'s transaction, once per event.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from newsletter.errors import NewsletterError
from newsletter.model import SubscriberState
from newsletter.plurals import nouns
from newsletter.store.bounces import BounceEvent, EventKind, Recorded, Rule

if TYPE_CHECKING:
    from newsletter.store import Store

log = logging.getLogger("newsletter")

# Gmail's bulk-sender guidance (support.google.com/mail/answer/81126): keep the
# spam rate reported in Postmaster Tools below 0.1 % and never reach 0.3 %;
# Yahoo publishes the same 0.3 %.
COMPLAINT_RATE_LIMIT = 0.003
COMPLAINT_RATE_TARGET = 0.001
# Amazon SES reviews an account whose hard-bounce rate reaches 5 %
# (docs.aws.amazon.com/ses/latest/dg/reputationdashboard-messages.html).
BOUNCE_RATE_LIMIT = 0.05


def rule(bounce_limit: int) -> Rule:
    """The rule `BounceEvents.record` applies, for `email.bounce_limit`."""

    def apply(
        event: BounceEvent, state: SubscriberState, bounces: int
    ) -> tuple[SubscriberState, int]:
        if event.kind is EventKind.HARD:
            bounces += 1
            mailed = state in (SubscriberState.ACTIVE, SubscriberState.PENDING)
            if mailed and bounces >= bounce_limit:
                state = SubscriberState.BOUNCED
        elif event.kind is EventKind.COMPLAINT:
            state = SubscriberState.COMPLAINED
        elif event.kind is EventKind.UNSUBSCRIBE and state is not SubscriberState.COMPLAINED:
            state = SubscriberState.UNSUBSCRIBED
        elif event.kind is EventKind.REACTIVATED:
            state, bounces = SubscriberState.ACTIVE, 0
        return state, bounces

    return apply


def record(store: Store, event: BounceEvent, bounce_limit: int) -> Recorded:
    """Store one event with its effect (once: see `BounceEvents.record`) and log it."""
    done = store.bounces.record(event, rule(bounce_limit))
    if done.duplicate:
        log.info("%s for %s from %s: already recorded", event.kind, event.email, event.source)
        return done
    issue = f" ({event.issue_date} {event.edition})" if event.issue_date else ""
    if done.after is None:
        change = "; not a subscriber"
    elif done.after != done.before:
        change = f"; {done.before} -> {done.after}"
    else:
        change = ""
    log.info(
        "%s for %s%s from %s: %s%s",
        event.kind,
        event.email,
        issue,
        event.source,
        (f"{event.status} {event.diagnostic}".strip() or "-")[:200],
        change,
        extra={"event": event.kind.value, "email": event.email, "source": event.source},
    )
    return done


@dataclass(frozen=True)
class Reactivated:
    """The subscriber's state before reactivation; bounces counted until then."""

    email: str
    before: SubscriberState
    hard_bounces: int


def reactivate(store: Store, email: str, *, force: bool = False) -> Reactivated:
    """Make a subscriber active again, its bounce count reset, and log it as an event.

    NewsletterError if the address is not a subscriber, is active already with
    no bounces, or complained and `force` is not given.
    """
    current = store.subscribers.get(email)
    if current is None:
        raise NewsletterError(
            f"{email} is not a subscriber", hint="list them with 'newsletter subscribers list'"
        )
    bounces = store.subscribers.hard_bounces(current.email)
    if current.state is SubscriberState.ACTIVE and not bounces:
        raise NewsletterError(f"{current.email} is active with no bounces: nothing to undo")
    if current.state is SubscriberState.COMPLAINED and not force:
        raise NewsletterError(
            f"{current.email} reported our mail as spam (a complaint)",
            hint="mail it again only if its owner asked you to: add --force",
        )
    stamp = dt.datetime.now(dt.UTC)
    event = BounceEvent(
        kind=EventKind.REACTIVATED,
        email=current.email,
        source="cli",
        ref=f"reactivated|{current.email.lower()}|{stamp.isoformat()}",
        diagnostic=f"was {current.state.value} with {nouns(bounces, 'hard bounce', 'hard bounces')}"
        + (" (forced)" if force else ""),
    )
    record(store, event, bounce_limit=1)
    return Reactivated(current.email, current.state, bounces)


def issue_rates(
    deliveries: dict[str, dict[str, int]], events: dict[str, dict[str, int]]
) -> dict[str, dict[str, float | int]]:
    """Per issue date: messages mailed (sent + refused), recipients with a hard
    bounce, a soft bounce, a complaint, and the hard-bounce and complaint rates
    in percent of mailed (`newsletter status`)."""
    out: dict[str, dict[str, float | int]] = {}
    for date, states in deliveries.items():
        counts = events.get(date, {})
        mailed = states.get("sent", 0) + states.get("failed", 0)
        hard = counts.get(EventKind.HARD.value, 0)
        complaints = counts.get(EventKind.COMPLAINT.value, 0)
        out[date] = {
            "mailed": mailed,
            "hard_bounces": hard,
            "soft_bounces": counts.get(EventKind.SOFT.value, 0),
            "complaints": complaints,
            "unsubscribes": counts.get(EventKind.UNSUBSCRIBE.value, 0),
            "hard_bounce_rate": round(100 * hard / mailed, 2) if mailed else 0.0,
            "complaint_rate": round(100 * complaints / mailed, 2) if mailed else 0.0,
        }
    return out


def rate_warnings(rates: dict[str, dict[str, float | int]]) -> list[str]:
    """The issues whose rates pass the thresholds mailbox providers publish."""
    warnings = []
    for date, r in rates.items():
        complaint, hard = float(r["complaint_rate"]), float(r["hard_bounce_rate"])
        if complaint >= 100 * COMPLAINT_RATE_LIMIT:
            warnings.append(
                f"{date}: complaint rate {complaint:.2f} % is at or above 0.3 %, the limit in "
                "Gmail's and Yahoo's bulk-sender guidelines: mail from you may be blocked"
            )
        elif complaint >= 100 * COMPLAINT_RATE_TARGET:
            warnings.append(
                f"{date}: complaint rate {complaint:.2f} % is above Gmail's 0.1 % target"
            )
        if hard >= 100 * BOUNCE_RATE_LIMIT:
            warnings.append(
                f"{date}: hard-bounce rate {hard:.2f} % is at or above 5 %, where Amazon SES "
                "puts an account under review: clean the list"
            )
    return warnings
