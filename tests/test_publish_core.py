"""publish, status and preview called in-process (the CLI tests run them as
subprocesses too): results by value, errors naming files and dates."""

from __future__ import annotations

import datetime as dt
import http.server
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest
from smtp_servers import free_port

from newsletter.config import load_config
from newsletter.errors import NewsletterError
from newsletter.model import Week
from newsletter.preview import preview_config, serve_preview
from newsletter.publish import build, publish, scan
from newsletter.status import collect_status
from newsletter.store import Store

DATE = dt.date(2025, 4, 4)
SEOUL = dt.timezone(dt.timedelta(hours=9))


@pytest.fixture
def config(project: Path, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    return load_config(project / "config.yaml")


def subscribe(config, address="reader@example.org", edition="both"):
    with Store.open(config) as store:
        store.subscribers.add(address, edition, "독자")


# --- publish ---------------------------------------------------------------------


def test_publish_writes_the_date_and_emails_once(config):
    subscribe(config)
    result = publish(config, DATE, force=True)
    assert result.date == DATE and result.bad == ()
    assert {"ko/2025-04-04/index.html", "en/2025-04-04/index.html"} <= set(result.site.written)
    assert not any("2025-05-19" in path for path in result.site.written)
    assert (result.delivery.sent, result.delivery.skipped) == (1, 0)
    assert (config.paths.outbox / "2025-04-04" / "reader@example.org.eml").is_file()
    again = publish(config, DATE, force=True)
    assert again.site.written == () and again.site.unchanged == len(result.site.written)
    assert (again.delivery.sent, again.delivery.skipped) == (0, 1)


def test_publish_without_email_and_dry_run(config):
    subscribe(config)
    dry = publish(config, DATE, dry_run=True, force=True)
    assert "ko/2025-04-04/index.html" in dry.site.written
    assert dry.delivery.dry_run and dry.delivery.recipients == {"both": ("reader@example.org",)}
    assert not config.paths.public.exists() and not config.paths.outbox.exists()
    quiet = publish(config, DATE, email=False)
    assert quiet.delivery is None and (config.paths.public / "ko" / "2025-04-04").is_dir()
    assert not config.paths.outbox.exists()


def test_publish_a_date_with_no_digest_names_the_latest_and_the_bad_files(config):
    (config.paths.digests / "broken.txt").write_text("2025년 2월 30일\n", encoding="utf-8")
    with pytest.raises(NewsletterError) as error:
        publish(config, dt.date(2025, 4, 5))
    assert "no digest dated 2025-04-05" in error.value.message
    assert "broken.txt:1: impossible date" in error.value.message
    assert error.value.hint.endswith("2025-01-22, 2025-04-04, 2025-05-19")
    assert not config.paths.public.exists()


def test_publish_a_date_whose_file_clashes_publishes_nothing(config):
    shutil.copy(config.paths.digests / "2025-04-04.txt", config.paths.digests / "copy.txt")
    with pytest.raises(NewsletterError) as error:
        publish(config, DATE)
    assert "the digest for 2025-04-04 cannot be published" in error.value.message
    assert "copy.txt:1: another digest has the same date 2025-04-04" in error.value.message
    assert not config.paths.public.exists()


def test_scan_of_a_missing_folder_is_a_clear_error(config):
    shutil.rmtree(config.paths.digests)
    with pytest.raises(NewsletterError, match=r"the digests folder .*digests does not exist"):
        scan(config)


def test_build_publishes_the_good_files_and_reports_the_bad(config):
    (config.paths.digests / "broken.txt").write_text("not a date\n", encoding="utf-8")
    result = build(config)
    assert result.date is None and result.delivery is None
    assert [Path(r.file).name for r in result.bad] == ["broken.txt"]
    for date in ("2025-01-22", "2025-04-04", "2025-05-19"):
        assert f"en/{date}/index.html" in result.site.written
    assert [d.date.isoformat() for d in scan(config).digests] == [
        "2025-01-22",
        "2025-04-04",
        "2025-05-19",
    ]


# --- status ------------------------------------------------------------------------


def test_status_before_and_after_publishing(config):
    now = dt.datetime(2025, 4, 4, 6, 0, tzinfo=SEOUL)
    subscribe(config, "a@example.org")
    subscribe(config, "b@example.org", "ko")
    with Store.open(config) as store:
        store.subscribers.remove("b@example.org")
    before = collect_status(config, now)
    assert before == {
        "last_published": None,
        # 2025-01-22 is too old to email; 2025-04-04 is due at 07:00 Seoul time.
        "next_send": {"date": "2025-04-04", "at": "2025-04-04T07:00:00+09:00"},
        # The week of 2025-04-04 (ISO 2025-W14) is emailed on Monday 2025-04-07.
        "next_weekly_send": {"week": "2025-W14", "at": "2025-04-07T07:00:00+09:00"},
        "deliveries": {},
        "subscribers": {"active": 1, "unsubscribed": 1},
        "bounces": {},
        "warnings": [],
        "links": {"lookup": "off"},
    }
    publish(config, DATE, force=True)
    after = collect_status(config, now)
    assert after["last_published"] == "2025-04-04"
    assert after["deliveries"] == {"2025-04-04": {"sent": 1}}
    with Store.open(config) as store:
        store.ledger.mark_issue_emailed(DATE)
    assert collect_status(config, now)["next_send"] == {
        "date": "2025-05-19",
        "at": "2025-05-19T07:00:00+09:00",
    }
    with Store.open(config) as store:
        store.ledger.mark_issue_emailed(Week(2025, 14))
    assert collect_status(config, now)["next_weekly_send"] == {
        "week": "2025-W21",
        "at": "2025-05-26T07:00:00+09:00",
    }
    late = dt.datetime(2025, 6, 1, tzinfo=SEOUL)
    assert collect_status(config, late)["next_send"] is None
    assert collect_status(config, late)["next_weekly_send"] is None


# --- preview ------------------------------------------------------------------------


def test_preview_config_points_at_localhost_and_the_temporary_folder(config, tmp_path):
    local = preview_config(config, tmp_path / "preview", 8123)
    assert local.site.base_url == "http://127.0.0.1:8123/"
    assert local.paths.public == tmp_path / "preview"
    assert local.paths.digests == config.paths.digests
    assert config.site.base_url == "https://example.org/papers/"  # the original is untouched


class _Servers:
    """The preview's real HTTP server, kept so the test can stop it."""

    def __init__(self, monkeypatch) -> None:
        self.made: list[http.server.ThreadingHTTPServer] = []
        made = self.made

        import newsletter.preview

        class Recorded(newsletter.preview._Server):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                made.append(self)

        monkeypatch.setattr(newsletter.preview, "_Server", Recorded)


def test_preview_serves_a_temporary_site_and_removes_it(config, monkeypatch):
    servers = _Servers(monkeypatch)
    port = free_port()
    lines: list[str] = []
    ready = threading.Event()

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("previewing"):
            ready.set()

    (config.paths.digests / "broken.txt").write_text("nope\n", encoding="utf-8")
    thread = threading.Thread(
        target=serve_preview,
        kwargs={
            "config": config,
            "date": DATE,
            "edition": "en",
            "port": port,
            "open_browser": False,
            "echo": echo,
        },
    )
    thread.start()
    try:
        assert ready.wait(120), lines
        url = f"http://127.0.0.1:{port}/en/2025-04-04/"
        assert lines[-1] == f"previewing 2025-04-04 at {url} (Ctrl-C to stop)"
        assert any(line.startswith("skipped: ") and "broken.txt:1" in line for line in lines)
        with urllib.request.urlopen(url, timeout=120) as page:
            html = page.read().decode("utf-8")
        assert "April 4, 2025" in html and f'href="http://127.0.0.1:{port}/' in html
        folder = Path(servers.made[0].RequestHandlerClass.keywords["directory"])
        assert folder.is_dir()
    finally:
        for server in servers.made:
            server.shutdown()
        thread.join(120)
    assert not folder.exists()  # the temporary site is gone
    assert not config.paths.public.exists()


def test_preview_on_a_busy_port_is_a_clear_error(config):
    with http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as busy:
        port = busy.server_address[1]
        with pytest.raises(NewsletterError) as error:
            serve_preview(config, date=None, edition=None, port=port, open_browser=False)
    assert f"cannot listen on 127.0.0.1:{port}" in error.value.message
    assert "--port" in error.value.hint


def test_preview_without_a_valid_digest_is_a_clear_error(config):
    for path in config.paths.digests.iterdir():
        path.unlink()
    with pytest.raises(NewsletterError, match="no valid digest in"):
        serve_preview(config, date=None, edition=None, port=free_port(), open_browser=False)
