"""A sign-up whose confirmation mail cannot be sent leaves the database as it
was; the mail and the confirmed page say what was chosen; a non-ASCII local part
is warned about when added. Real uvicorn, real SQLite, real aiosmtpd relays
(one without SMTPUTF8, one refusing a mailbox, none listening)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS, run_cli, serve_in_thread
from smtp_servers import Handler, free_port, start_server
from test_web import SECRET, Client, Running, csrf_of, link_in, make_config, plain_body, server

from newsletter.config import SECRET_ENV, config_from_dict
from newsletter.model import Cadence, SubscriberState
from newsletter.store import Store
from newsletter.store.subscribers import Preferences

__all__ = ["server"]  # the web service fixture, used by name

HANGUL_LOCAL = "유니@example.org"


def _service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_port: int):
    """The web service with the SMTP transport to 127.0.0.1:smtp_port."""
    from newsletter.web.app import create_app

    monkeypatch.setenv(SECRET_ENV, SECRET)
    port = free_port()
    base = make_config(tmp_path, port)
    raw = {
        "site": {"title": "ML Papers", "base_url": f"http://127.0.0.1:{port}/"},
        "paths": {"digests": str(SAMPLE_DIGESTS), "state": "state", "public": "public"},
        "server": {"port": port, "public_url": f"http://127.0.0.1:{port}/"},
        "email": {
            "transport": "smtp",
            "from": "ML Papers <papers@news.example.org>",
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none"},
        },
    }
    config = config_from_dict(raw, base=tmp_path)
    assert config.paths.state == base.paths.state
    clock = [dt.datetime.now(dt.UTC)]
    app = create_app(config, clock=lambda: clock[0])
    return serve_in_thread(app, port), Running(
        config, Client(f"http://127.0.0.1:{port}/"), clock, app
    )


def _rows(config) -> dict[str, tuple]:
    with Store.open(config) as store:
        return {
            s.email: (s.state, s.state_changed_at, s.cadence, s.topics)
            for s in store.subscribers.list()
        }


def _sign_up(client: Client, address: str, **extra: str):
    form = client.get("subscribe")
    fields = {"csrf": csrf_of(form.text), "email": address, "edition": "ko", **extra}
    return client.post("subscribe", fields)


def _not_sent_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]


def test_a_relay_without_smtputf8_leaves_no_row(tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.web")
    handler = Handler(reject={"refused@example.org": 550})
    with start_server(handler, enable_SMTPUTF8=False) as relay:
        serving, web = _service(tmp_path, monkeypatch, relay.port)
        with serving:
            with Store.open(web.config) as store:
                store.subscribers.add("left@example.org", "en", state=SubscriberState.ACTIVE)
                store.subscribers.remove("left@example.org")
                store.subscribers.add(
                    "waiting@example.org", "ko", state=SubscriberState.PENDING,
                    preferences=Preferences(cadence=Cadence.DAILY, topics=()),
                )  # fmt: skip
            before = _rows(web.config)
            for address in (HANGUL_LOCAL, "한글.독자@example.org", "refused@example.org"):
                reply = _sign_up(web.client, address)
                assert reply.status == 503 and "지금은 메일을 보낼 수 없습니다" in reply.text
            # Someone who left, or is pending: their row stays exactly as it was.
            for address in ("left@example.org", "waiting@example.org"):
                handler.reject[address] = 550
                reply = _sign_up(web.client, address, cadence="weekly", scope="some", topic="rl")
                assert reply.status == 503
            assert _rows(web.config) == before
            # The same relay takes an ASCII address: the row, and the mail.
            assert _sign_up(web.client, "ascii@example.org").status == 200
            assert _rows(web.config)["ascii@example.org"][0] is SubscriberState.PENDING
    lines = _not_sent_lines(caplog)
    assert lines[0] == (
        f"confirmation email to {HANGUL_LOCAL} not sent: the relay does not support "
        "SMTPUTF8 (RFC 6531), which an address whose part before the @ is not ASCII needs"
    )
    assert re.fullmatch(
        r"confirmation email to refused@example\.org not sent: 550 \S.*", lines[2]
    ), lines[2]
    # No "---" for a missing code, no address said twice ("…not sent: a@b: 550 …").
    assert not [x for x in lines if "---" in x or re.search(r"not sent: \S+@\S+: ", x)], lines


def test_a_relay_that_is_down_or_an_unwritable_outbox_leaves_no_row(
    tmp_path, monkeypatch, caplog, server
) -> None:
    caplog.set_level(logging.WARNING, logger="newsletter.web")
    serving, web = _service(tmp_path / "down", monkeypatch, free_port())  # nobody listens
    with serving:
        assert _sign_up(web.client, "down@example.org").status == 503
        assert _rows(web.config) == {}
    # The file transport: a file where the confirmations folder should be.
    server.config.paths.outbox.mkdir(parents=True)
    (server.config.paths.outbox / "confirmations").write_text("not a folder")
    assert _sign_up(server.client, "outbox@example.org").status == 503
    assert _rows(server.config) == {}
    lines = _not_sent_lines(caplog)
    assert len(lines) == 2 and all("---" not in line for line in lines)
    assert "down@example.org not sent: SMTP server 127.0.0.1:" in lines[0]


def test_the_confirmation_mail_and_page_say_the_choices(server) -> None:
    reply = _sign_up(
        server.client, "choices@example.org", cadence="weekly", scope="some", topic="rl"
    )
    assert reply.status == 200
    body = server.client.get("subscribe")
    fields = {"csrf": csrf_of(body.text), "email": "choices@example.org", "edition": "both"}
    data = "&".join(
        f"{k}={v}" for k, v in (fields | {"cadence": "weekly", "scope": "some"}).items()
    )
    data += "&topic=moe&topic=rl&topic=%EC%B6%94%EB%A1%A0"  # moe, rl, 추론
    assert server.client.post("subscribe", data.encode()).status == 200
    message = server.confirmation("choices@example.org")
    text = plain_body(message)
    assert (
        "받는 주기: 매주 월요일" in text
        and "받을 논문: #moe, #rl, #추론 태그가 붙은 논문만" in text
    )
    assert "How often: weekly, on Mondays" in text
    assert "Papers: only papers tagged moe, rl, 추론" in text
    html = message.get_body(("html",)).get_content()
    assert "매주 월요일" in html and "only papers tagged moe, rl, 추론" in html
    page = server.client.confirm(link_in(message, "confirm"))
    assert page.status == 200
    assert "매주 월요일, #moe, #rl, #추론 태그가 붙은 논문만 받습니다." in page.text
    assert "Weekly, on Mondays, only papers tagged moe, rl, 추론." in page.text
    # Daily and every paper, said as plainly; an old link says the same.
    _sign_up(server.client, "daily@example.org")
    daily = server.confirmation("daily@example.org")
    assert "받는 주기: 매일" in plain_body(daily) and "Papers: every paper" in plain_body(daily)
    link = link_in(daily, "confirm")
    for _ in range(2):  # confirming, then the link again
        page = server.client.confirm(link) if _ == 0 else server.client.get(link)
        assert "매일, 모든 논문을 받습니다." in page.text and "Daily, every paper." in page.text


def test_adding_or_importing_a_non_ascii_local_part_warns(project: Path) -> None:
    added = run_cli("subscribers", "add", "한글@example.org", cwd=project)
    assert added.returncode == 0, added.stderr
    assert "warning: 한글@example.org: the part before the @ is not ASCII" in added.stderr
    assert "SMTPUTF8 (RFC 6531)" in added.stderr
    plain = run_cli("subscribers", "add", "plain@bücher.example", cwd=project)
    assert plain.returncode == 0 and "warning" not in plain.stderr  # an IDN domain needs none
    rows = "email,edition\n유니@example.org,en\nascii@example.org,ko\n독자@example.org,both\n"
    (project / "list.csv").write_text(rows, encoding="utf-8")
    imported = run_cli("subscribers", "import", "list.csv", cwd=project)
    assert imported.returncode == 0, imported.stderr
    warnings = [line for line in imported.stderr.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: 유니@example.org, 독자@example.org: the part before the @ is not ASCII, "
        "so mail to them needs a relay that supports SMTPUTF8 (RFC 6531); a relay without "
        "it refuses every message to them"
    ]


def test_publishing_to_a_relay_without_smtputf8_says_why_plainly(tmp_path) -> None:
    from test_kill import smtp_project

    handler = Handler()
    with start_server(handler, enable_SMTPUTF8=False) as relay:
        command = smtp_project(tmp_path, relay, 2)
        config = command[command.index("--config") + 1]
        added = run_cli("--config", config, "subscribers", "add", "한글@example.org")
        assert "SMTPUTF8 (RFC 6531)" in added.stderr
        result = run_cli(*command[3:], env={SECRET_ENV: SECRET})
    assert len(handler.messages) == 2  # the ASCII readers
    (line,) = [x for x in result.stderr.splitlines() if "한글@example.org" in x]
    assert line.endswith(
        "한글@example.org: the relay does not support SMTPUTF8 (RFC 6531), which an address "
        "whose part before the @ is not ASCII needs (not retried)"
    ), line
    assert "---" not in result.stderr
    parsed = email.message_from_bytes(handler.messages[0].data, policy=email.policy.default)
    assert parsed["To"]
