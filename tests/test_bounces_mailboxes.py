"""`bounces process` on real mailboxes: Maildir and mbox files, and a real Dovecot over IMAP.

The same mailbox in each: a Postfix DSN, a feedback report, a vacation reply, a
mailto unsubscribe, a delay warning, and three messages that are not ours to
act on (a question, somebody else's bounce, an unsubscribe with a forged
token). Every message must end in the right state, and the three must stay
exactly as they were: same bytes, same folder, same flags.
"""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest
from bounce_samples import READERS, SECRET, make_world
from dovecot_server import PASSWORD, start_dovecot

from newsletter.bounces.process import process_mailbox
from newsletter.errors import NewsletterError
from newsletter.model import SubscriberState
from newsletter.store.bounces import EventKind

ACTED = [
    ("postfix-hard", READERS[0]),
    ("arf-complaint", READERS[1]),
    ("vacation-rfc3834", READERS[2]),
    ("unsubscribe", READERS[3]),
    ("postfix-delayed", READERS[4]),
]
KEPT = [("unrelated", READERS[0]), ("unrelated-bounce", READERS[0]), ("forged", READERS[2])]

FINAL_STATES = {
    READERS[0]: SubscriberState.BOUNCED,  # bounce_limit 1
    READERS[1]: SubscriberState.COMPLAINED,
    READERS[2]: SubscriberState.ACTIVE,  # a vacation reply is never a bounce
    READERS[3]: SubscriberState.UNSUBSCRIBED,
    READERS[4]: SubscriberState.ACTIVE,  # soft bounces never bounce on their own
}
EVENTS = {
    (EventKind.HARD, READERS[0]),
    (EventKind.COMPLAINT, READERS[1]),
    (EventKind.UNSUBSCRIBE, READERS[3]),
    (EventKind.SOFT, READERS[4]),
}


def messages(world):
    """(name, bytes) of every message of the scenario, acted-on ones first."""
    out = [(name, world.sample(name, email)) for name, email in ACTED]
    for name, email in KEPT:
        if name == "forged":
            token = world.token(READERS[3])
            forged = token[:-1] + ("A" if token[-1] != "A" else "B")
            data = world.sample("unsubscribe", email, **{"@@TOKEN@@": forged})
        else:
            data = world.sample(name, email)
        out.append((name, data))
    return out


def check_outcome(world, report):
    store = world.store
    states = {email: store.subscribers.get(email).state for email in READERS}
    assert states == FINAL_STATES
    events = store.bounces.list()
    assert {(e.kind, e.email) for e in events} == EVENTS
    assert len(events) == len(EVENTS)
    assert report.recorded == len(EVENTS) and report.duplicates == 0
    assert report.read == len(ACTED) + len(KEPT)
    assert report.moved == len(ACTED) and report.untouched == len(KEPT)
    hard = next(e for e in events if e.kind is EventKind.HARD)
    assert (hard.issue_date.isoformat(), hard.edition.value, hard.status) == (
        "2025-04-04",
        "ko",
        "5.1.1",
    )
    assert hard.source == report.mailbox.partition(":")[0].replace("imaps", "imap")


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    monkeypatch.setenv("BOUNCE_PASSWORD", PASSWORD)


def world_for(tmp_path, mailbox_spec):
    return make_world(
        tmp_path,
        email={"bounce_limit": 1},
        bounces={"mailbox": mailbox_spec, "password_env": "BOUNCE_PASSWORD"},
    )


# --- Maildir --------------------------------------------------------------------------------


def make_maildir(path: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(parents=True)


def test_maildir(tmp_path, env):
    box = tmp_path / "Maildir"
    make_maildir(box)
    world = world_for(tmp_path, "maildir:Maildir")  # relative to the config's folder
    files = {}
    for number, (name, data) in enumerate(messages(world)):
        # Some new, some read and flagged: names (with flags) must survive a move.
        sub, info = ("new", "") if number % 2 else ("cur", ":2,FS")
        file = box / sub / f"17437{number:05d}.M{number}P1.mail.example.org{info}"
        file.write_bytes(data)
        os.utime(file, (1_700_000_000, 1_700_000_000))
        files[name] = file
    before = {name: (f.read_bytes(), f.stat().st_mtime_ns) for name, f in files.items()}

    report = process_mailbox(world.config, world.store)

    check_outcome(world, report)
    for name, _ in ACTED:
        file = files[name]
        moved = box / ".processed" / file.parent.name / file.name
        assert not file.exists() and moved.read_bytes() == before[name][0]
    for name, _ in KEPT:
        file = files[name]
        assert (file.read_bytes(), file.stat().st_mtime_ns) == before[name]
    assert (box / ".processed" / "maildirfolder").exists()
    kept = sorted(p.name for sub in ("new", "cur") for p in (box / sub).iterdir())
    assert kept == sorted(files[name].name for name, _ in KEPT)

    # Again: nothing new to do, nothing moves, nothing is counted twice.
    again = process_mailbox(world.config, world.store)
    assert (again.read, again.recorded, again.moved) == (len(KEPT), 0, 0)
    assert len(world.store.bounces.list()) == len(EVENTS)
    world.store.close()


def test_a_crash_before_the_move_counts_nothing_twice(tmp_path, env, monkeypatch):
    from newsletter.bounces import mailboxes

    box = tmp_path / "Maildir"
    make_maildir(box)
    world = world_for(tmp_path, f"maildir:{box}")
    world.store.subscribers  # noqa: B018
    for number, (_name, data) in enumerate(messages(world)):
        (box / "new" / f"m{number}").write_bytes(data)

    def crash(self, keys):
        raise OSError("disk full")

    original = mailboxes.MaildirBox.move_processed
    monkeypatch.setattr(mailboxes.MaildirBox, "move_processed", crash)
    with pytest.raises(OSError):
        process_mailbox(world.config, world.store)
    assert len(world.store.bounces.list()) == len(EVENTS)  # recorded before the move
    assert len(list((box / "new").iterdir())) == len(ACTED) + len(KEPT)

    monkeypatch.setattr(mailboxes.MaildirBox, "move_processed", original)
    report = process_mailbox(world.config, world.store)
    assert (report.recorded, report.duplicates, report.moved) == (0, 4, len(ACTED))
    assert len(world.store.bounces.list()) == len(EVENTS)
    assert {e: s for e, s in FINAL_STATES.items()} == {
        e: world.store.subscribers.get(e).state for e in READERS
    }
    world.store.close()


def test_not_a_maildir_is_a_clear_error(tmp_path, env):
    world = world_for(tmp_path, "maildir:nowhere")
    with pytest.raises(NewsletterError, match="is not a Maildir"):
        process_mailbox(world.config, world.store)
    world.store.close()


# --- mbox ---------------------------------------------------------------------------------------


def test_mbox(tmp_path, env):
    path = tmp_path / "bounces.mbox"
    world = world_for(tmp_path, f"mbox:{path}")
    box = mailbox.mbox(path)
    for _name, data in messages(world):
        box.add(data)
    box.flush()
    box.close()
    original = mailbox.mbox(path)
    raw = {key: original.get_bytes(key, from_=True) for key in original.iterkeys()}
    original.close()
    by_name = dict(zip([name for name, _ in messages(world)], raw.values(), strict=True))

    report = process_mailbox(world.config, world.store)

    check_outcome(world, report)
    left = mailbox.mbox(path)
    assert [left.get_bytes(k, from_=True) for k in left.iterkeys()] == [
        by_name[name] for name, _ in KEPT
    ]
    left.close()
    # The file is exactly the kept messages as they were (From_ lines included),
    # each followed by the blank line that ends a message in an mbox.
    assert path.read_bytes() == b"".join(by_name[name] + b"\n" for name, _ in KEPT)
    processed = mailbox.mbox(tmp_path / "bounces.mbox.processed")
    assert [processed.get_bytes(k, from_=True) for k in processed.iterkeys()] == [
        by_name[name] for name, _ in ACTED
    ]
    processed.close()
    assert not (tmp_path / "bounces.mbox.lock").exists()  # the dotlock was released
    world.store.close()


def test_an_mbox_with_nothing_to_do_is_not_rewritten(tmp_path, env):
    path = tmp_path / "bounces.mbox"
    world = world_for(tmp_path, f"mbox:{path}")
    box = mailbox.mbox(path)
    for name, email in KEPT[:2]:
        box.add(world.sample(name, email))
    box.flush()
    box.close()
    os.utime(path, (1_700_000_000, 1_700_000_000))
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino)
    report = process_mailbox(world.config, world.store)
    assert (report.read, report.moved) == (2, 0)
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert not (tmp_path / "bounces.mbox.processed").exists()
    world.store.close()


# --- IMAP (Dovecot) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot():
    with start_dovecot() as server:
        yield server


def imap_client(dovecot, tls=False):
    import ssl

    from imapclient import IMAPClient

    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    client = IMAPClient(
        dovecot.host,
        port=dovecot.tls_port if tls else dovecot.port,
        ssl=tls,
        ssl_context=context,
    )
    client.login("bounces", PASSWORD)
    return client


def fill_imap(dovecot, folder, items):
    """APPEND each (name, bytes) with its own flags; returns {name: flags}."""
    client = imap_client(dovecot)
    if not client.folder_exists(folder):
        client.create_folder(folder)
    flag_sets = [(), (b"\\Seen",), (b"\\Flagged", b"\\Seen"), (b"$Label1",)]
    flags = {}
    for number, (name, data) in enumerate(items):
        chosen = flag_sets[number % len(flag_sets)]
        client.append(folder, data, flags=chosen)
        flags[name] = set(chosen)
    client.logout()
    return flags


def read_imap(dovecot, folder):
    """[(bytes, stored flags)] of a folder, by UID, read without changing anything."""
    client = imap_client(dovecot)
    client.select_folder(folder, readonly=True)
    uids = client.search("ALL")
    out = []
    for _uid, data in sorted(client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]).items()):
        out.append((data[b"BODY[]"], set(data[b"FLAGS"]) - {b"\\Recent"}))
    client.logout()
    return out


@pytest.mark.parametrize("tls", [False, True], ids=["imap", "imaps"])
def test_imap(tmp_path, env, dovecot, tls, monkeypatch):
    folder = f"Bounces{'TLS' if tls else ''}"
    # TLS (imaps://, or STARTTLS on imap:// when offered, as Dovecot does) verifies
    # the server with the system's trust store: here, the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    world = world_for(tmp_path, dovecot.url(folder, tls=tls))
    items = messages(world)
    flags = fill_imap(dovecot, folder, items)

    report = process_mailbox(world.config, world.store)

    check_outcome(world, report)
    kept = read_imap(dovecot, folder)
    data = dict(items)
    assert kept == [(data[name], flags[name]) for name, _ in KEPT]
    processed = read_imap(dovecot, "processed")
    for name, _ in ACTED:
        assert (data[name], flags[name]) in processed  # moved, flags and bytes kept
    again = process_mailbox(world.config, world.store)
    assert (again.read, again.recorded, again.moved) == (len(KEPT), 0, 0)
    assert read_imap(dovecot, folder) == kept
    world.store.close()


def test_imap_bad_password_is_a_clear_error(tmp_path, env, dovecot, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.ca_file))
    monkeypatch.setenv("BOUNCE_PASSWORD", "wrong")
    world = world_for(tmp_path, dovecot.url())
    with pytest.raises(NewsletterError, match="refused the login of 'bounces'") as caught:
        process_mailbox(world.config, world.store)
    assert "bounces.password_env" in caught.value.hint
    world.store.close()


def test_imap_untrusted_certificate_is_a_clear_error(tmp_path, env, dovecot):
    world = world_for(tmp_path, dovecot.url(tls=True))
    with pytest.raises(NewsletterError, match="certificate") as caught:
        process_mailbox(world.config, world.store)
    assert "trust" in caught.value.hint
    world.store.close()


def test_imap_server_down_is_a_clear_error(tmp_path, env):
    from smtp_servers import free_port

    world = world_for(tmp_path, f"imap://bounces@127.0.0.1:{free_port()}/INBOX")
    with pytest.raises(NewsletterError, match="cannot connect to the IMAP server"):
        process_mailbox(world.config, world.store)
    world.store.close()


def test_imap_without_a_password_variable(tmp_path, env, monkeypatch):
    monkeypatch.delenv("BOUNCE_PASSWORD")
    world = world_for(tmp_path, "imaps://bounces@mail.example.org/INBOX")
    with pytest.raises(NewsletterError, match=r"names \$BOUNCE_PASSWORD, which is not set"):
        process_mailbox(world.config, world.store)
    world.store.close()


def test_a_message_that_breaks_the_classifier_is_left_and_the_rest_processed(
    tmp_path, env, monkeypatch, caplog
):
    from newsletter.bounces.classify import Classifier

    box = tmp_path / "Maildir"
    make_maildir(box)
    world = world_for(tmp_path, f"maildir:{box}")
    (box / "new" / "a-breaks").write_bytes(b"Subject: trigger\r\n\r\nboom")
    (box / "new" / "b-dsn").write_bytes(world.sample("postfix-hard", READERS[0]))
    original = Classifier.classify

    def classify(self, data):
        if b"trigger" in data:
            raise RuntimeError("a defect")
        return original(self, data)

    monkeypatch.setattr(Classifier, "classify", classify)
    report = process_mailbox(world.config, world.store)
    assert (report.read, report.recorded, report.moved, report.untouched) == (2, 1, 1, 1)
    assert (box / "new" / "a-breaks").exists()
    assert "could not be classified" in caplog.text
    world.store.close()
