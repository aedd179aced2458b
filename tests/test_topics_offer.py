"""The topics on offer on /subscribe and /preferences: the tags of the 90 days up
to the newest issue of the archive, whatever today is; none to offer, no choice.
Real uvicorn (tests/test_web.py's fixture), real SQLite."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from helpers import SAMPLE_DIGESTS, serve_in_thread
from smtp_servers import free_port
from test_web import SECRET, Client, Running, csrf_of, make_config, server

from newsletter.config import SECRET_ENV
from newsletter.digest import read_digest
from newsletter.model import Cadence
from newsletter.store import Store
from newsletter.store.subscribers import Preferences
from newsletter.tokens import UNSUBSCRIBE, sign_token

__all__ = ["server"]  # the web service fixture, used by name

OFFERED = re.compile(r'name="topic" value="([^"]+)"')


def _preferences(server: Running, address: str, topics: tuple[str, ...] = ()) -> str:
    with Store.open(server.config) as store:
        store.subscribers.add(address, "ko", preferences=Preferences(topics=topics))
    token = sign_token(SECRET.encode(), UNSUBSCRIBE, address)
    page = server.client.get(f"preferences?token={token}")
    assert page.status == 200, page.text
    return page.text


@pytest.mark.parametrize("today", [dt.date(2025, 9, 1), dt.date(2026, 11, 30)])
def test_a_quiet_archive_still_offers_its_tags(server: Running, today: dt.date) -> None:
    # The newest sample issue is 19 May 2025: months before `today`.
    server.clock[0] = dt.datetime.combine(today, dt.time(3), tzinfo=dt.UTC)
    form = server.client.get("subscribe")
    offered = OFFERED.findall(form.text)
    # 20 Feb - 19 May 2025: April's and May's tags, most used first; not
    # January's alone (sparsity, dataset, parallelism).
    assert offered[:3] == ["rl", "reasoning", "reward-model"], offered
    assert not {"sparsity", "dataset", "parallelism"} & set(offered)
    assert "가장 최근 호까지 90일" in form.text and "up to the newest issue" in form.text
    fields = {"csrf": csrf_of(form.text), "email": "quiet@example.org", "edition": "ko"}
    reply = server.client.post("subscribe", fields | {"scope": "some", "topic": "moe"})
    assert reply.status == 200, reply.text
    with Store.open(server.config) as store:
        assert store.subscribers.get("quiet@example.org").topics == ("moe",)
    page = _preferences(server, "prefs@example.org")
    assert OFFERED.findall(page)[:3] == ["rl", "reasoning", "reward-model"]


def test_the_window_ends_at_the_newest_issue() -> None:
    from newsletter.topics import recent_tags

    digests = [read_digest(path).digest for path in sorted(SAMPLE_DIGESTS.glob("*.txt"))]
    # Without May: 5 Jan - 4 Apr, so January's tags are back.
    tags = {t.key: t.count for t in recent_tags(digests[:2])}
    assert tags["moe"] == 2 and tags["sparsity"] == 1 and "agent" not in tags
    assert recent_tags([]) == []


@pytest.fixture
def empty_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The web service over a digests folder with no issue yet."""
    from newsletter.web.app import create_app

    monkeypatch.setenv(SECRET_ENV, SECRET)
    port = free_port()
    config = make_config(tmp_path, port)
    folder = tmp_path / "no-digests"
    folder.mkdir()
    config = config.model_copy(
        update={"paths": config.paths.model_copy(update={"digests": folder})}
    )
    clock = [dt.datetime.now(dt.UTC)]
    app = create_app(config, clock=lambda: clock[0])
    with serve_in_thread(app, port):
        yield Running(config, Client(f"http://127.0.0.1:{port}/"), clock, app)


def test_no_tags_to_offer_no_topic_choice(empty_archive: Running) -> None:
    client = empty_archive.client
    form = client.get("subscribe")
    assert form.status == 200
    assert 'name="scope"' not in form.text and 'name="topic"' not in form.text
    assert "주제" not in form.text and "Only papers with" not in form.text
    # The form as it is signs up for every paper.
    fields = {"csrf": csrf_of(form.text), "email": "all@example.org", "edition": "ko"}
    reply = client.post("subscribe", fields | {"cadence": "weekly"})
    assert reply.status == 200, reply.text
    with Store.open(empty_archive.config) as store:
        pending = store.subscribers.get("all@example.org")
    assert (pending.cadence, pending.topics) == (Cadence.WEEKLY, ())
    # The preferences page likewise, unless the reader chose topics before:
    # those are still shown, checked.
    assert 'name="scope"' not in _preferences(empty_archive, "plain@example.org")
    page = _preferences(empty_archive, "tagged@example.org", ("moe",))
    assert re.search(r'value="moe" checked> #moe <span class="gone">', page)
