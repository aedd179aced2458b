"""deliver_issue / send_test against real SMTP servers (aiosmtpd) and the outbox."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import logging
import ssl

import pytest
import real_parts
from smtp_servers import Handler, free_port, mail_config, sample_digest, start_server

from newsletter.deliver.issue import deliver_issue
from newsletter.deliver.proof import send_test
from newsletter.errors import NewsletterError
from newsletter.model import Edition, SubscriberState
from newsletter.store import Store
from newsletter.store.database import Database
from newsletter.tokens import verify_token
from newsletter.transports.smtp import SmtpTransport

NOW = dt.datetime(2025, 4, 4, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
FAST = (0.01, 0.01, 0.01)
SECRET = "test-secret-0123456789"


@pytest.fixture
def mail_secret(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def smtp_config(tmp_path, server, **email):
    smtp = {"host": server.host, "port": server.port, "security": "none", "timeout": 5}
    smtp |= email.pop("smtp", {})
    return mail_config(tmp_path, transport="smtp", smtp=smtp, **email)


def make_store(tmp_path, count=12):
    store = Store(Database(f"sqlite:///{tmp_path / 'nl.db'}"))
    editions = list(Edition)
    for i in range(count):
        store.subscribers.add(f"user{i}@example.org", editions[i % 3], f"사용자 {i}")
    return store


def test_file_transport_and_rerun_sends_nothing(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    config = mail_config(tmp_path)
    store = make_store(tmp_path, 3)
    with caplog.at_level(logging.WARNING, logger="newsletter"):
        report = deliver_issue(config, store, sample_digest(), now=NOW)
    assert "NEWSLETTER_SECRET" in caplog.text  # dev secret, said out loud
    assert (report.sent, report.failed, report.skipped, report.pending_left) == (3, 0, 0, 0)
    assert {e: c.sent for e, c in report.per_edition.items()} == {"ko": 1, "en": 1, "both": 1}
    files = sorted((tmp_path / "outbox" / "2025-04-04").glob("*.eml"))
    assert [f.name for f in files] == [f"user{i}@example.org.eml" for i in range(3)]
    msg = email.message_from_bytes(files[1].read_bytes(), policy=email.policy.default)
    assert msg["Subject"] == "[ML Papers] April 4, 2025 · 4 papers"
    assert msg["To"] == "사용자 1 <user1@example.org>"
    again = deliver_issue(config, store, sample_digest(), now=NOW)
    assert (again.sent, again.skipped) == (0, 3)


def test_smtp_delivery_exactly_once(tmp_path, mail_secret):
    with start_server() as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 3})
        store = make_store(tmp_path, 30)
        store.subscribers.set_state("user0@example.org", SubscriberState.UNSUBSCRIBED)
        store.subscribers.set_state("user1@example.org", SubscriberState.BOUNCED)
        calls = []
        report = deliver_issue(
            config, store, sample_digest(), now=NOW, progress=lambda d, t: calls.append((d, t))
        )
        assert (report.sent, report.failed, report.pending_left) == (28, 0, 0)
        assert calls[-1] == (28, 28)
        assert report.messages_per_second > 0
        counts = server.handler.count_by_recipient()
        assert set(counts.values()) == {1} and len(counts) == 28
        assert "user0@example.org" not in counts and "user1@example.org" not in counts
        # Every message parses, every part decodes, and is addressed to its recipient.
        for received in server.handler.messages:
            msg = email.message_from_bytes(received.data, policy=email.policy.default)
            (address,) = received.recipients
            assert msg["To"].addresses[0].addr_spec == address
            assert received.sender == "papers@example.org"
            token = msg["List-Unsubscribe"].split("token=")[1].split(">")[0]
            assert verify_token(SECRET.encode(), "unsubscribe", token) == address
            text, html = (part.get_content() for part in msg.iter_parts())
            assert f"token={token}" in text and f"token={token}" in html
            assert "논문" in msg["Subject"] or "Papers" in msg["Subject"]
        rerun = deliver_issue(config, store, sample_digest(), now=NOW)
        assert (rerun.sent, rerun.skipped) == (0, 28)
        assert len(server.handler.messages) == 28
        assert store.ledger.delivery_counts(sample_digest().date) == {"sent": 28}


def test_451_is_retried_then_succeeds(tmp_path, mail_secret):
    handler = Handler(temp_fail_first=3)
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 1})
        store = make_store(tmp_path, 5)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
    assert (report.sent, report.failed, report.pending_left) == (5, 0, 0)
    assert set(handler.count_by_recipient().values()) == {1}
    attempts = sorted(d.attempts for d in store.ledger.deliveries_for(NOW.date()))
    assert attempts == [1, 1, 2, 2, 2]


def test_451_forever_stays_pending_for_a_rerun(tmp_path, mail_secret):
    handler = Handler(temp_fail_first=10**6)
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server)
        store = make_store(tmp_path, 2)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=(0.01,))
        assert (report.sent, report.pending_left) == (0, 2)
        assert {d.state for d in store.ledger.deliveries_for(NOW.date())} == {"pending"}
        assert all(d.last_reply.startswith("451") for d in store.ledger.deliveries_for(NOW.date()))
        handler.temp_fail_first = 0
        assert deliver_issue(config, store, sample_digest(), now=NOW).sent == 2


def test_451_forever_is_given_up_at_max_attempts_over_all_runs(tmp_path, mail_secret):
    handler = Handler(temp_fail_first=10**6)
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, max_attempts=3)
        store = make_store(tmp_path, 2)
        first = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=(0.01,))
        assert (first.sent, first.failed, first.pending_left) == (0, 0, 2)
        # The rerun makes the third attempt of each, not a fourth and fifth.
        second = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=(0.01,))
        assert (second.sent, second.failed, second.pending_left) == (0, 2, 0)
        assert handler.data_calls == 6
        rows = store.ledger.deliveries_for(NOW.date())
        assert {(d.state, d.attempts) for d in rows} == {("failed", 3)}
        assert all(
            d.last_reply.startswith("gave up after 3 attempts; last reply: 451") for d in rows
        )
        third = deliver_issue(config, store, sample_digest(), now=NOW)
        assert (third.sent, third.skipped) == (0, 2) and handler.data_calls == 6
        # A temporary failure is no bounce: the subscribers stay active.
        assert {s.state for s in store.subscribers.list()} == {SubscriberState.ACTIVE}


def test_550_fails_without_retry_and_bounces_after_limit(tmp_path, mail_secret):
    handler = Handler(reject={"user2@example.org": 550})
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, bounce_limit=2)
        store = make_store(tmp_path, 4)
        digest = sample_digest()
        report = deliver_issue(config, store, digest, now=NOW, retry_delays=FAST)
        assert (report.sent, report.failed) == (3, 1)
        assert handler.rcpt_calls["user2@example.org"] == 1  # not retried
        assert store.subscribers.get("user2@example.org").state is SubscriberState.ACTIVE
        # A rerun of the same date does not try the failed address again.
        assert deliver_issue(config, store, digest, now=NOW).sent == 0
        assert handler.rcpt_calls["user2@example.org"] == 1
        # The next issue: second hard bounce = bounce_limit -> bounced.
        import dataclasses

        next_day = dataclasses.replace(digest, date=digest.date + dt.timedelta(days=1))
        deliver_issue(config, store, next_day, now=NOW + dt.timedelta(days=1))
    assert store.subscribers.get("user2@example.org").state is SubscriberState.BOUNCED
    assert store.subscribers.hard_bounces("user2@example.org") == 2
    failed = [d for d in store.ledger.deliveries_for(digest.date) if d.state == "failed"]
    assert failed[0].last_reply.startswith("550")


def test_dropped_connection_is_retried(tmp_path, mail_secret):
    handler = Handler(drop_on={3, 7})
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 2})
        store = make_store(tmp_path, 10)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=FAST)
    assert (report.sent, report.failed, report.pending_left) == (10, 0, 0)
    counts = handler.count_by_recipient()
    assert len(counts) == 10 and set(counts.values()) == {1}


def test_connection_refused_marks_nothing(tmp_path, mail_secret):
    config = mail_config(
        tmp_path,
        transport="smtp",
        smtp={"host": "127.0.0.1", "port": free_port(), "security": "none"},
    )
    store = make_store(tmp_path, 3)
    with pytest.raises(NewsletterError, match="refused the connection"):
        deliver_issue(config, store, sample_digest(), now=NOW)
    assert store.ledger.delivery_counts(NOW.date()) == {}


def test_smtp_needs_the_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    with start_server() as server:
        config = smtp_config(tmp_path, server)
        store = make_store(tmp_path, 1)
        with pytest.raises(NewsletterError, match="NEWSLETTER_SECRET"):
            deliver_issue(config, store, sample_digest(), now=NOW)
        assert server.handler.messages == []


def test_starttls_auth_delivery_with_private_ca(tmp_path, mail_secret, monkeypatch):
    trustme = real_parts.import_real("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))  # how users trust a private CA
    monkeypatch.setenv("MAIL_PW", "pw")
    with start_server(tls_context=server_ctx, auth=("u", "pw")) as server:
        config = smtp_config(
            tmp_path,
            server,
            smtp={"security": "starttls", "username": "u", "password_env": "MAIL_PW"},
        )
        report = deliver_issue(config, make_store(tmp_path, 3), sample_digest(), now=NOW)
        assert report.sent == 3 and len(server.handler.messages) == 3
        monkeypatch.setenv("MAIL_PW", "nope")
        (tmp_path / "second").mkdir()
        store = make_store(tmp_path / "second", 1)
        with pytest.raises(NewsletterError, match="refused the login"):
            deliver_issue(config, store, sample_digest(), now=NOW)
        assert store.ledger.delivery_counts(NOW.date()) == {}


def test_too_late_unless_forced(tmp_path, mail_secret):
    config = mail_config(tmp_path)
    store = make_store(tmp_path, 2)
    later = NOW + dt.timedelta(days=3)
    report = deliver_issue(config, store, sample_digest(), now=later)
    assert report.too_late and report.sent == 0 and "max_lateness_days" in report.note
    assert deliver_issue(config, store, sample_digest(), now=later, force=True).sent == 2
    assert not deliver_issue(
        config, store, sample_digest(), now=NOW + dt.timedelta(days=2)
    ).too_late


def test_dry_run_sends_nothing(tmp_path, mail_secret):
    with start_server() as server:
        config = smtp_config(tmp_path, server)
        store = make_store(tmp_path, 5)
        report = deliver_issue(config, store, sample_digest(), now=NOW, dry_run=True)
        assert report.dry_run and report.sent == 0 and report.pending_left == 5
        assert report.recipients == {
            "ko": ("user0@example.org", "user3@example.org"),
            "en": ("user1@example.org", "user4@example.org"),
            "both": ("user2@example.org",),
        }
        assert server.handler.messages == [] and store.ledger.delivery_counts(NOW.date()) == {}


def test_send_test_is_marked_and_not_recorded(tmp_path, mail_secret):
    with start_server() as server:
        config = smtp_config(tmp_path, server)
        store = make_store(tmp_path, 1)
        send_test(config, sample_digest(), "Editor@Example.org", "ko", now=NOW)
        (received,) = server.handler.messages
        msg = email.message_from_bytes(received.data, policy=email.policy.default)
        assert msg["Subject"] == "[TEST] [ML Papers] 2025년 4월 4일 · 논문 4편"
        assert received.recipients == ["Editor@example.org"]
        assert store.ledger.delivery_counts(NOW.date()) == {}
        with pytest.raises(NewsletterError):
            send_test(
                config,
                sample_digest(),
                "x@example.org",
                "en",
                transport=SmtpTransport(
                    mail_config(
                        tmp_path,
                        transport="smtp",
                        smtp={"host": "127.0.0.1", "port": free_port(), "security": "none"},
                    ).email.smtp
                ),
            )


def test_send_test_file_transport(tmp_path, mail_secret):
    config = mail_config(tmp_path)
    (proof,) = send_test(config, sample_digest(), "me@example.org", Edition.BOTH, now=NOW)
    assert proof.path == tmp_path / "outbox" / "2025-04-04" / "test" / "me@example.org.both.1.eml"
    assert proof.path.exists()


# --- worker processes -----------------------------------------------------------


@pytest.fixture
def pools(monkeypatch):
    """Which kind of worker pool deliver_issue used, in order."""
    from newsletter.deliver import workers

    used = []
    for name in ("_ProcessPool", "_ThreadPool"):
        real = getattr(workers, name)
        spy = type(name, (real,), {"__init__": _recording_init(real, used, name)})
        monkeypatch.setattr(workers, name, spy)
    return used


def _recording_init(real, used, name):
    def __init__(self, *args, **kwargs):
        used.append(name)
        real.__init__(self, *args, **kwargs)

    return __init__


def boundary(message: bytes) -> bytes:
    """The MIME boundary (it differs between two builds of an edition)."""
    return message.split(b'boundary="', 1)[1].split(b'"', 1)[0]


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
def test_worker_processes_send_each_once_byte_exact(tmp_path, mail_secret, pools, pipelining):
    from newsletter.deliver.workers import _fork_is_safe
    from newsletter.mail import build_edition_email
    from newsletter.tokens import UNSUBSCRIBE, sign_token

    digest = sample_digest()
    # Comments that start with '.': lines of the text part do too (dot-stuffing).
    dotted = dataclasses.replace(
        digest.entries[0], comment_ko=".NET 얘기는 아닙니다.", comment_en=".NET it is not."
    )
    digest = dataclasses.replace(digest, entries=(dotted, *digest.entries[1:]))
    with start_server(Handler(pipelining=pipelining)) as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 3})
        store = make_store(tmp_path, 150)
        report = deliver_issue(config, store, digest, now=NOW)
    assert pools == ["_ProcessPool" if _fork_is_safe() else "_ThreadPool"]
    assert (report.sent, report.failed, report.pending_left) == (150, 0, 0)
    assert store.ledger.delivery_counts(digest.date) == {"sent": 150}
    counts = server.handler.count_by_recipient()
    assert len(counts) == 150 and set(counts.values()) == {1}
    # What arrived is exactly the message built for that recipient (8bit: the
    # server advertises 8BITMIME): the editions were dot-stuffed once for SMTP
    # and the server's un-stuffing gives back the original bytes.
    emails = {e: build_edition_email(config, digest, e, now=NOW) for e in Edition}
    subscribers = {s.email: s for s in store.subscribers.list()}
    for received in server.handler.messages:
        (address,) = received.recipients
        sub = subscribers[address]
        token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)
        expected = emails[sub.edition].personalise(address, sub.name, token)
        assert received.data == expected.replace(boundary(expected), boundary(received.data))
    assert any(b"\r\n." in m.data for m in server.handler.messages)


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
def test_stop_finishes_in_flight_records_them_and_leaves_the_rest(
    tmp_path, mail_secret, pipelining
):
    # With PIPELINING, a stop may find the next message's envelope sent ahead
    # (DATA accepted): that session is hung up, and that message is not sent.
    import threading

    handler = Handler(delay=0.01, pipelining=pipelining)
    stop = threading.Event()
    with start_server(handler) as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 2})
        store = make_store(tmp_path, 120)

        def progress(done, total):
            if done >= 20:
                stop.set()

        report = deliver_issue(
            config, store, sample_digest(), now=NOW, progress=progress, stop=stop
        )
        assert 20 <= report.sent < 120 and report.pending_left == 120 - report.sent
        # Every message the server accepted is in the ledger: nothing in flight was lost.
        assert store.ledger.delivery_counts(NOW.date()).get("sent") == report.sent
        assert len(handler.messages) == report.sent
        rest = deliver_issue(config, store, sample_digest(), now=NOW)
        assert rest.sent == 120 - report.sent and rest.pending_left == 0
    counts = handler.count_by_recipient()
    assert len(counts) == 120 and set(counts.values()) == {1}


def test_rate_limit_is_divided_among_worker_processes(tmp_path, mail_secret):
    # 200 messages/s in all, 2 worker processes: 100/s each, a bucket of 10 each.
    # Per worker, message k+1 is taken from the bucket only after message k's
    # reply, so its k messages span at least (k - 1 - burst) / rate at the
    # server, however loaded the machine (load only spreads them further). The
    # busier worker sent at least half: the run spans >= (n - 2 * 11) / 200 s.
    # Each worker is handed up to 128 jobs at a time: 256 messages keep both busy.
    # No limit sends them in a few ms; an undivided one (200/s each) in
    # about (128 - 21) / 200 = 0.53 s; the bound is 1.17 s.
    rate, connections, n = 200, 2, 256
    with start_server() as server:
        config = smtp_config(
            tmp_path, server, smtp={"connections": connections, "rate_limit": rate}
        )
        store = make_store(tmp_path, n)
        report = deliver_issue(config, store, sample_digest(), now=NOW)
    assert report.sent == n
    times = sorted(m.at for m in server.handler.messages)
    burst = max(1, rate / connections / 10)
    assert times[-1] - times[0] >= (n - connections * (1 + burst)) / rate, times


def test_transport_factory_runs_in_threads(tmp_path, mail_secret, pools):
    with start_server() as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 2})
        store = make_store(tmp_path, 10)
        made = []

        def factory():
            made.append(SmtpTransport(config.email.smtp))
            return made[-1]

        report = deliver_issue(config, store, sample_digest(), now=NOW, transport_factory=factory)
    assert pools == ["_ThreadPool"] and len(made) == 2
    assert report.sent == 10 and len(server.handler.messages) == 10


def test_a_worker_process_that_dies_leaves_its_messages_pending(tmp_path, mail_secret, monkeypatch):
    import os

    from newsletter.deliver import workers

    if not workers._fork_is_safe():
        pytest.skip("worker processes need fork")
    real = workers.sign_token

    def crash_on_user7(secret, purpose, address):
        if address == "user7@example.org":
            os._exit(3)  # a worker process dies without a word
        return real(secret, purpose, address)

    monkeypatch.setattr(workers, "sign_token", crash_on_user7)
    with start_server() as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 2})
        store = make_store(tmp_path, 30)
        report = deliver_issue(config, store, sample_digest(), now=NOW, retry_delays=())
        assert report.sent + report.pending_left == 30 and report.pending_left >= 1
        assert store.ledger.delivery_counts(NOW.date()).get("sent") == report.sent
        monkeypatch.setattr(workers, "sign_token", real)
        rest = deliver_issue(config, store, sample_digest(), now=NOW)
        assert rest.pending_left == 0
    counts = server.handler.count_by_recipient()
    assert len(counts) == 30 and max(counts.values()) == 1


def test_sigterm_while_a_batch_of_results_is_handled_loses_none_of_it(
    tmp_path, mail_secret, monkeypatch
):
    """SIGTERM landing while the run handles a batch of results it took from
    its workers: the signal waits until the batch is handled, so every
    message the relay accepted is in the ledger (before, the rest of the batch
    was dropped and a rerun sent those messages again)."""
    import os
    import signal

    from newsletter.deliver import run
    from newsletter.signals import sigterm_is_ctrl_c

    classify = run.SendRun._classify
    calls = []

    def classify_and_signal(self, job, failure, retry):
        calls.append(job)
        if len(calls) == 40:
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal, mid-batch
        return classify(self, job, failure, retry)

    monkeypatch.setattr(run.SendRun, "_classify", classify_and_signal)
    with start_server(Handler(pipelining=True)) as server:
        config = smtp_config(tmp_path, server, smtp={"connections": 2})
        store = make_store(tmp_path, 300)
        with sigterm_is_ctrl_c(), pytest.raises(KeyboardInterrupt):
            deliver_issue(config, store, sample_digest(), now=NOW)
        accepted = {r for m in server.handler.messages for r in m.recipients}
    rows = store.ledger.deliveries_for(sample_digest().date)
    sent = {d.email for d in rows if d.state == "sent"}
    assert len(calls) >= 40 and accepted == sent
