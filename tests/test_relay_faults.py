"""A relay's bad day, against real aiosmtpd servers: which refusals are whose.

A refusal of the *message* (a 5xx after DATA, or 552 at MAIL for its SIZE) is
the same for everyone who gets that message (its edition, of every paper or of
some readers' topics): nobody may be marked failed or bounced, that message
stops, and a rerun after the relay is fixed sends it. A refusal
of the *session* (421, 452 4.5.3 too many recipients, a session that answers
4xx to everything) needs a new session, not a retry on the same one; the
relay's per-session limit is learned and kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
import smtp_servers
from smtp_servers import Handler, mail_config, sample_digest, start_server

from newsletter.deliver.issue import deliver_issue
from newsletter.model import Edition, SubscriberState
from newsletter.store import Store
from newsletter.store.database import Database

NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
FAST = (0.01, 0.01, 0.01)


@pytest.fixture(autouse=True)
def mail_secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", "relay-faults-secret-0123456789")


@pytest.fixture(autouse=True, params=["lockstep", "pipelining"])
def relay_pipelines(request, monkeypatch):
    """Every fault twice: a relay without PIPELINING (a round trip per command),
    and one with it, where each message's data carries the next message's
    envelope (whose refusals then arrive with the message before)."""
    pipelining = request.param == "pipelining"

    @contextlib.contextmanager
    def start_server(handler=None, **options):
        handler = handler or Handler()
        handler.pipelining = pipelining
        with smtp_servers.start_server(handler, **options) as server:
            yield server

    monkeypatch.setitem(globals(), "start_server", start_server)


def smtp_config(tmp_path, server, **smtp):
    settings = {"host": server.host, "port": server.port, "security": "none", "timeout": 10}
    return mail_config(tmp_path, transport="smtp", smtp=settings | smtp)


def make_store(tmp_path, count, editions=tuple(Edition)):
    store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
    store.subscribers.add_many(
        (f"reader{i:04d}@example.org", editions[i % len(editions)], "") for i in range(count)
    )
    return store


def everyone(count):
    return {f"reader{i:04d}@example.org": 1 for i in range(count)}


@pytest.mark.parametrize(
    "reply", ["552 5.3.4 Message too big for system", "554 Transaction failed", "550 Rejected"]
)
def test_a_message_refused_after_data_stops_the_issue_and_a_rerun_sends_it(tmp_path, reply):
    handler = Handler(refuse_content=(b"", reply))
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, connections=2)
        store = make_store(tmp_path, 30)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert (report.sent, report.failed, report.pending_left) == (0, 0, 30)
        assert set(report.refused) == {"ko", "en", "both"}
        assert all(r.startswith(reply.split()[0]) for r in report.refused.values())
        # At most one refusal per edition and connection, then the edition stops.
        assert handler.data_calls <= 3 * 2
        rows = store.ledger.deliveries_for(NOW.date())
        assert {d.state for d in rows} == {"pending"}
        assert {s.state for s in store.subscribers.list()} == {SubscriberState.ACTIVE}
        assert all(store.subscribers.hard_bounces(s.email) == 0 for s in store.subscribers.list())

        handler.refuse_content = None  # the relay is fixed
        rerun = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert (rerun.sent, rerun.failed, rerun.pending_left, rerun.refused) == (30, 0, 0, {})
    assert handler.count_by_recipient() == everyone(30)


def test_only_the_refused_edition_stops(tmp_path):
    # A size limit between the editions' sizes: SIZE at MAIL (RFC 1870) refuses
    # the 'both' edition only (the largest); the other two go out in full.
    sizes = {e: len(_personalised(tmp_path, e)) for e in Edition}
    assert sizes[Edition.BOTH] > max(sizes[Edition.KO], sizes[Edition.EN])
    limit = (sizes[Edition.BOTH] + max(sizes[Edition.KO], sizes[Edition.EN])) // 2
    with start_server(Handler(), data_size_limit=limit) as server:
        config = smtp_config(tmp_path, server, connections=2)
        store = make_store(tmp_path, 30)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert list(report.refused) == ["both"]
        assert report.refused["both"].startswith("552")
        assert (report.sent, report.failed, report.pending_left) == (20, 0, 10)
        assert report.per_edition["both"].pending == 10
        counts = store.ledger.delivery_counts(NOW.date())
        assert counts == {"sent": 20, "pending": 10}
    received = server.handler.count_by_recipient()
    assert len(received) == 20 and set(received.values()) == {1}


def test_only_the_refused_message_stops_when_topics_make_several(tmp_path):
    # One edition, two messages: every paper (the larger) for readers without
    # topics, one paper for readers of 'efficiency'. A SIZE limit between the
    # two refuses only the larger: its readers stay pending, the others get theirs.
    from newsletter.letters import Letter
    from newsletter.mail import build_email
    from newsletter.store.subscribers import Preferences

    config = mail_config(tmp_path)
    letter = Letter.daily(sample_digest())
    small = build_email(
        config, letter.for_topics(("efficiency",)), Edition.EN, now=NOW, topics=True
    )
    whole = build_email(config, letter, Edition.EN, now=NOW)
    sizes = [len(m.personalise("reader0000@example.org", "", "t0ken")) for m in (small, whole)]
    assert sizes[0] < sizes[1]
    with start_server(Handler(), data_size_limit=sum(sizes) // 2) as server:
        config = smtp_config(tmp_path, server, connections=2)
        store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
        store.subscribers.add_many(
            (
                f"reader{i:04d}@example.org",
                Edition.EN,
                "",
                Preferences(topics=("efficiency",) if i % 2 else ()),
            )
            for i in range(20)
        )
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert report.variants == 2
        assert list(report.refused) == ["en"] and report.refused["en"].startswith("552")
        assert (report.sent, report.failed, report.pending_left) == (10, 0, 10)
        rows = {d.email: d.state for d in store.ledger.deliveries_for(NOW.date())}
        assert rows == {
            f"reader{i:04d}@example.org": "sent" if i % 2 else "pending" for i in range(20)
        }
    assert server.handler.count_by_recipient() == {
        f"reader{i:04d}@example.org": 1 for i in range(1, 20, 2)
    }


def _personalised(tmp_path, edition):
    from newsletter.mail import build_edition_email

    config = mail_config(tmp_path)
    email = build_edition_email(config, sample_digest(), edition, now=NOW)
    return email.personalise("reader0000@example.org", "", "t0ken")


def test_a_recipient_refused_after_data_is_that_recipients_failure(tmp_path):
    # RFC 3463 X.1.x after DATA names the recipient (e.g. a relay that checks
    # mailboxes late): that one is failed and bounced; the others go out.
    handler = Handler(refuse_content=(b"To: reader0003@", "550 5.1.1 No such user"))
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server)
        store = make_store(tmp_path, 6)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
    assert (report.sent, report.failed, report.refused) == (5, 1, {})
    assert store.subscribers.hard_bounces("reader0003@example.org") == 1


def _refused_rcpts(handler):
    return sum(handler.rcpt_calls.values()) - 1000


@pytest.mark.parametrize(
    ("limit", "refusals"),
    [
        # 452 4.5.3 for the 101st RCPT of a session; the refused RCPTs are counted.
        ({"session_recipients": 100}, _refused_rcpts),
        # 421 and a hang-up at the 101st MAIL of a session; the 421s are counted.
        ({"session_messages": 100}, lambda handler: handler.closed_sessions),
    ],
    ids=["452 4.5.3 after 100 recipients", "421 after 100 messages"],
)
def test_a_relay_with_a_per_session_limit_gets_everyone_once(tmp_path, limit, refusals):
    handler = Handler(**limit)
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, connections=2)
        store = make_store(tmp_path, 1000)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert (report.sent, report.failed, report.pending_left) == (1000, 0, 0)
        assert store.ledger.delivery_counts(NOW.date()) == {"sent": 1000}
        # Each refused message went again at once on a new session: one attempt each.
        assert {d.attempts for d in store.ledger.deliveries_for(NOW.date())} == {1}
    assert handler.count_by_recipient() == everyone(1000)
    # The limit was learned: one refusal per connection, then it stays under it.
    assert refusals(handler) <= 2, refusals(handler)


def test_a_session_answering_4xx_to_everything_is_replaced(tmp_path):
    # After 20 messages a session turns sick (451 to every message); a new
    # session is healthy. Retrying on the same connection never gets through.
    handler = Handler(sick_after=20)
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, connections=1)
        store = make_store(tmp_path, 100)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
        assert (report.sent, report.failed, report.pending_left) == (100, 0, 0)
    assert handler.count_by_recipient() == everyone(100)


def test_publish_says_which_edition_was_refused_and_exits_1(tmp_path):
    from helpers import run_cli
    from smtp_servers import smtp_project

    handler = Handler(refuse_content=(b"", "554 5.7.1 Message refused by policy"))
    with start_server(handler) as server:
        config = smtp_project(tmp_path, server, 9, smtp={"connections": 1})
        publish = ("--config", str(config), "publish", "--date", "2025-04-04", "--force")
        env = {"NEWSLETTER_SECRET": "relay-faults-secret-0123456789"}
        first = run_cli(*publish, env=env)
        assert first.returncode == 1
        for edition in ("ko", "en", "both"):
            assert (
                f"error: the SMTP server refused the {edition} edition's message for 2025-04-04: "
                "554 5.7.1 Message refused by policy" in first.stderr
            )
        assert "its 3 message(s) stay pending" in first.stderr
        assert "Traceback" not in first.stderr
        assert "0 sent, 0 failed" in first.stdout
        handler.refuse_content = None
        second = run_cli(*publish, env=env)
        assert second.returncode == 0, second.stderr
    assert handler.count_by_recipient() == {f"reader{i}@example.org": 1 for i in range(9)}
