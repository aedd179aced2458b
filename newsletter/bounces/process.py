"""`newsletter bounces process`: read the bounce mailbox, record what it reports, file it away.

For each message: classify it (`classify.py`); a bounce, complaint or
unsubscribe becomes an event with its effect on the subscriber (`policy.py`,
once per event however often the message is read); an auto-reply or a
delivery notice is recognised and needs nothing. Those messages are moved to
`processed` at the end; anything else stays exactly where it was. Events are
recorded before anything moves, so a crash in between only means the next
run finds them again, sees they are recorded, and moves them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.bounces.classify import Classifier, Kind
from newsletter.bounces.mailboxes import open_mailbox
from newsletter.bounces.policy import record
from newsletter.mail import resolve_secret
from newsletter.plurals import nouns
from newsletter.store.bounces import BounceEvent

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.store import Store

log = logging.getLogger("newsletter")


@dataclass(frozen=True)
class ProcessReport:
    """One run over the mailbox: messages read, by kind; events newly recorded
    (`recorded`) or already there (`duplicates`); messages moved and left."""

    mailbox: str
    read: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    recorded: int = 0
    duplicates: int = 0
    moved: int = 0
    untouched: int = 0


def classifier_for(config: Config, store: Store) -> Classifier:
    """The classifier with this config's secret, bounce address and store."""
    secret = resolve_secret(config, smtp=config.email.transport == "smtp")
    return Classifier(
        secret, config.email.bounce_address, config.email.sender_domain, store.bounces
    )


def process_mailbox(
    config: Config, store: Store, *, stop: threading.Event | None = None
) -> ProcessReport:
    """Process `bounces.mailbox` once. NewsletterError if it cannot be opened or read
    (what was recorded before that stays recorded; its messages move next time)."""
    classifier = classifier_for(config, store)
    box = open_mailbox(config)
    kinds: Counter[str] = Counter()
    recorded = duplicates = read = 0
    acted: list[str] = []
    try:
        for item in box.items():
            if stop is not None and stop.is_set():
                break
            read += 1
            try:
                verdict = classifier.classify(item.data)
            except Exception:  # a defect, not the message's fault: leave it, go on
                log.exception("%s: message %s could not be classified; left", box.label, item.key)
                kinds["unknown"] += 1
                continue
            kinds[verdict.kind.value] += 1
            if not verdict.acted_on:
                log.debug("left in %s: %s (%s)", box.label, verdict.report_id, verdict.why)
                continue
            event_kind = verdict.kind.event
            if event_kind is not None and verdict.email:
                event = BounceEvent(
                    kind=event_kind,
                    email=verdict.email,
                    source=box.source,
                    ref=verdict.ref,
                    issue_date=verdict.date,
                    edition=verdict.edition,
                    status=verdict.status,
                    diagnostic=verdict.diagnostic,
                )
                done = record(store, event, config.email.bounce_limit)
                duplicates += done.duplicate
                recorded += not done.duplicate
            elif verdict.kind is Kind.AUTO_REPLY:
                log.info("auto-reply from %s ignored (%s)", verdict.email, verdict.why)
            acted.append(item.key)
        moved = box.move_processed(acted)
    finally:
        box.close()
    report = ProcessReport(
        mailbox=box.label,
        read=read,
        kinds=dict(sorted(kinds.items())),
        recorded=recorded,
        duplicates=duplicates,
        moved=moved,
        untouched=read - len(acted),
    )
    log.info(
        "%s: %s read, %s recorded (%d already known), %d moved to processed, %d left untouched",
        report.mailbox,
        nouns(report.read, "message", "messages"),
        nouns(report.recorded, "event", "events"),
        report.duplicates,
        report.moved,
        report.untouched,
        extra={"event": "bounces_processed", "recorded": recorded, "untouched": report.untouched},
    )
    return report


def poll(config: Config, stop: threading.Event) -> None:
    """One daemon poll of the bounce mailbox: errors are logged, never raised."""
    from newsletter.errors import NewsletterError
    from newsletter.store import Store

    if stop.is_set():
        return
    try:
        with Store.open(config) as store:
            process_mailbox(config, store, stop=stop)
    except NewsletterError as error:
        log.error("bounces: %s", error, extra={"event": "error"})
    except OSError as error:
        log.error("bounces: cannot read the mailbox: %s", error, extra={"event": "error"})
