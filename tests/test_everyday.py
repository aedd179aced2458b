"""An operator's everyday commands, as a newcomer runs them: the real CLI in a subprocess.

send-test per edition, subscribers add without --edition, publish --dry-run
counts, warnings that name the flag, preview's temporary folder, dotfiles, the
README's quick start, and logs that are JSON on every line.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import run_cli
from test_web import Running, server

__all__ = ["server"]  # used as a fixture by name

ROOT = Path(__file__).resolve().parent.parent


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result


# --- send-test ---------------------------------------------------------------------------


def send_test(cli, project: Path, to: str, *editions: str) -> subprocess.CompletedProcess[str]:
    """`newsletter send-test` of 2025-04-04 with one --edition per edition given."""
    chosen = [arg for edition in editions for arg in ("--edition", edition)]
    return ok(cli("send-test", "--date", "2025-04-04", "--to", to, *chosen, cwd=project))


def test_send_test_writes_one_new_file_per_edition_and_prints_each(cli, project):
    def send() -> list[Path]:
        result = send_test(cli, project, "editor@example.org", "ko", "en")
        paths = [Path(p) for p in re.findall(r"written to (\S+\.eml)", result.stdout)]
        assert len(paths) == 2, result.stdout
        return paths

    first = send()
    assert [p.name for p in first] == ["editor@example.org.ko.1.eml", "editor@example.org.en.1.eml"]
    saved = {p: p.read_bytes() for p in first}
    second = send()
    assert [p.name for p in second] == [
        "editor@example.org.ko.2.eml",
        "editor@example.org.en.2.eml",
    ]
    assert all(p.read_bytes() == data for p, data in saved.items())  # never overwritten
    assert len(list((project / "outbox" / "2025-04-04" / "test").iterdir())) == 4
    # The subject of each says its edition's language.
    subjects = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
        for p in second
    ]
    assert subjects[0].startswith("[TEST] [ML Papers] 2025년 4월 4일 · 논문 ")
    assert subjects[1].startswith("[TEST] [ML Papers] April 4, 2025 · ")


# --- subscribers add -----------------------------------------------------------------------


def test_subscribers_add_without_edition_uses_the_documented_default_and_says_so(cli, project):
    added = ok(cli("subscribers", "add", "new@example.org", cwd=project))
    assert added.stdout.startswith("new@example.org: active, edition ko (the default")
    assert "--edition" in added.stdout
    # An existing subscriber keeps their edition when none is given.
    ok(cli("subscribers", "add", "both@example.org", "--edition", "both", cwd=project))
    again = ok(cli("subscribers", "add", "both@example.org", "--name", "Kim", cwd=project))
    assert again.stdout.startswith("both@example.org: active, edition both (unchanged")
    # The default follows the config: the first of `editions`.
    config = project / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "editions: [en, both]\n")
    english = ok(cli("subscribers", "add", "en@example.org", cwd=project))
    assert "edition en (the default" in english.stdout
    # An edition the config does not publish would never be mailed: refused.
    refused = cli("subscribers", "add", "ko@example.org", "--edition", "ko", cwd=project)
    assert refused.returncode == 2 and "'ko' is not published" in refused.stderr
    # The README documents the default.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "without `--edition`" in readme and "the first of `editions`" in readme


# --- publish: dry-run counts and warnings ---------------------------------------------------


def test_dry_run_reports_what_a_real_run_reports(cli, project):
    for address, edition in [("a@example.org", "ko"), ("b@example.org", "en")]:
        ok(cli("subscribers", "add", address, "--edition", edition, cwd=project))
    ok(cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    ok(cli("subscribers", "add", "c@example.org", "--edition", "both", cwd=project))

    dry = ok(cli("publish", "--date", "2025-04-04", "--force", "--dry-run", cwd=project))
    assert "would send 1 × both: c@example.org" in dry.stdout
    assert "email: 1 message would be sent, 2 skipped" in dry.stdout
    real = ok(cli("publish", "--date", "2025-04-04", "--force", cwd=project))
    assert "email: 1 sent, 0 failed, 2 skipped, 0 left" in real.stdout
    again = ok(cli("publish", "--date", "2025-04-04", "--force", "--dry-run", cwd=project))
    assert "email: 0 messages would be sent, 3 skipped" in again.stdout

    # Without --force the old issue is not emailed, dry run or not; said once, with the flag.
    for extra in ([], ["--dry-run"]):
        late = ok(cli("publish", "--date", "2025-04-04", *extra, cwd=project))
        both = late.stdout + late.stderr
        assert both.count("not emailed") == 1, both
        assert "add --force to send it anyway" in late.stdout
        assert "would be sent" not in both and "0 skipped" not in both


def test_the_dev_secret_warning_appears_once_per_command(cli, project):
    result = send_test(cli, project, "me@example.org", "ko", "en", "both")
    assert result.stderr.count("NEWSLETTER_SECRET is not set") == 1


# --- preview ---------------------------------------------------------------------------------


def _preview(project: Path, tmp: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"TMPDIR": str(tmp), "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "newsletter",
            "preview",
            "--no-open",
            "--port",
            "0",
            "--date",
            "2025-04-04",
            "--edition",
            "en",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()  # printed once the server is listening
    match = re.search(r"at (http://127\.0\.0\.1:\d+/)en/2025-04-04/", line)
    assert match, (line, process.stderr.read() if process.poll() is not None else "")
    return process, match.group(1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_preview_removes_its_folder_when_stopped(project, tmp_path, stop):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    process, base = _preview(project, tmp)
    try:
        [folder] = list(tmp.glob("newsletter-preview-*"))
        with urllib.request.urlopen(base + "en/2025-04-04/", timeout=10) as page:
            html = page.read().decode("utf-8")
        assert "April 4, 2025" in html and "MegaMath" in html
        # Like `serve`, the preview never serves dotfiles or the build manifest.
        assert (folder / ".newsletter-manifest.json").exists()
        for path in (".newsletter-manifest.json", "%2Enewsletter-manifest.json", "en/.x"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 404, path
    finally:
        process.send_signal(stop)
        _out, err = process.communicate(timeout=120)  # a guard against a hang, not a timing
    assert process.returncode == 0, err
    assert list(tmp.iterdir()) == []
    assert "Traceback" not in err
    assert not (project / "public").exists()


def test_preview_server_is_quiet_when_a_client_hangs_up(tmp_path, capsys):
    """A client that resets the connection mid-request is no traceback (BrokenPipe, reset)."""
    import functools
    import socket
    import struct
    import threading

    from newsletter.preview import _Files, _Server

    (tmp_path / "index.html").write_text("<p>안녕</p>", encoding="utf-8")
    server = _Server(("127.0.0.1", 0), functools.partial(_Files, directory=str(tmp_path)))
    server.block_on_close = True  # server_close() joins every request thread
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        for partial in (b"GET /.x HTTP/1.1\r\n", b"GET /index.html HTTP/1.1\r\nHost: x\r\n"):
            client = socket.create_connection(server.server_address)
            client.sendall(partial)
            # linger 0: close() sends a reset, so the server's next read or write fails
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/") as page:
            assert "안녕" in page.read().decode("utf-8")
    finally:
        server.shutdown()
        serving.join()
        server.server_close()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


# --- serve: no dotfiles ------------------------------------------------------------------------


def test_serve_never_serves_dotfiles_or_the_manifest(server: Running) -> None:
    public = server.config.paths.public
    (public / "index.html").write_text("<p>home</p>", encoding="utf-8")
    (public / ".newsletter-manifest.json").write_text('{"files": []}', encoding="utf-8")
    (public / ".index.html.x1.tmp").write_text("half", encoding="utf-8")
    (public / ".git").mkdir()
    (public / ".git" / "config").write_text("[remote]", encoding="utf-8")
    (public / "ko" / ".secret").mkdir(parents=True)
    (public / "ko" / ".secret" / "index.html").write_text("no", encoding="utf-8")
    assert server.client.get("index.html").status == 200
    for path in (
        ".newsletter-manifest.json",
        "%2enewsletter-manifest.json",
        "./.newsletter-manifest.json",
        ".index.html.x1.tmp",
        ".git/config",
        "ko/.secret/",
        "ko/%2esecret/index.html",
    ):
        reply = server.client.get(path)
        assert reply.status == 404, path
        assert "페이지를 찾을 수 없습니다" in reply.text and "files" not in reply.text


# --- the README's quick start ------------------------------------------------------------------


def test_readme_quick_start_names_only_files_it_creates(tmp_path):
    from arxiv_server import ArxivServer, FakeTime

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("**Run it on the embedded defaults**", 1)[1].split("**Run the tests**")[0]
    command = re.search(r"```sh\n(.+?)\n```", quick, re.S).group(1)
    # The checkout's example files, as a fresh clone has them; arXiv is the
    # fake one (tests/arxiv_server.py), without the 3 s between requests.
    shipped = (ROOT / "config.yaml").read_text(encoding="utf-8")
    arxiv = ArxivServer(FakeTime())
    papers = f"papers:\n  arxiv_api_url: {arxiv.url}\n  interval_seconds: 0\n"
    assert shipped.count("papers:\n") == 1
    (tmp_path / "config.yaml").write_text(shipped.replace("papers:\n", papers), "utf-8")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    steps = [step.strip() for step in command.split("&&")]
    newsletter = [s for s in steps if s.startswith(".venv/bin/newsletter ")]
    assert len(newsletter) >= 2, steps
    try:
        for step in newsletter:
            ok(run_cli(*step.split()[1:], cwd=tmp_path))
    finally:
        arxiv.close()
    issue = (tmp_path / "public/en/2025-04-04/index.html").read_text(encoding="utf-8")
    assert 'href="https://arxiv.org/abs/2504.02807"' in issue  # the papers are linked
    named = re.findall(r"`((?:public|outbox|…)/[^`\s]*)`", quick)
    assert len(named) >= 5, named
    previous = None
    for name in named:
        if name.startswith("…/"):  # `…/rss.xml`: beside the one before
            assert previous is not None
            path = previous.parent / name.removeprefix("…/")
        else:
            path = tmp_path / name.split("…")[0]
        assert path.exists(), f"the quick start names {name}, which it does not create"
        previous = path


# --- logs --------------------------------------------------------------------------------------


def test_json_logs_cover_library_warnings_and_thread_errors(tmp_path):
    """setup_logging('json') in a fresh process: a Python warning, an SQLAlchemy
    warning, a library's logger, an exception escaping a thread."""
    code = """
import logging, threading, warnings
from newsletter.logs import setup_logging
setup_logging("text")
setup_logging("json")
warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)
import sqlalchemy as sa
warnings.warn(sa.exc.SAWarning("an SQLAlchemy warning"))
logging.getLogger("apscheduler.scheduler").warning("a library warning")
logging.getLogger("apscheduler.scheduler").info("library chatter, not shown")
logging.getLogger("newsletter").info("our own line", extra={"event": "x"})
def boom():
    raise RuntimeError("escaped a thread")
t = threading.Thread(target=boom, name="worker-1"); t.start(); t.join()
"""
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    records = [json.loads(line) for line in lines]  # every line is JSON
    messages = " | ".join(r["message"] for r in records)
    assert "a deprecated thing" in messages and "an SQLAlchemy warning" in messages
    assert "a library warning" in messages and "chatter" not in messages
    assert any(r.get("event") == "x" and r["message"] == "our own line" for r in records)
    [thread] = [r for r in records if "worker-1" in r["message"]]
    assert thread["level"] == "error" and "escaped a thread" in thread["traceback"]
    assert len(lines) == 5


def test_serve_json_logs_include_uvicorn_lines(tmp_path):
    from smtp_servers import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"NEWSLETTER_SECRET": "everyday-test-secret-0123", "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port), "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The "serving ..." line is logged once the socket listens.
        seen = [process.stderr.readline()]
        assert "serving the subscription service" in seen[0], seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/subscribe", timeout=10) as page:
            assert page.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _out, rest = process.communicate(timeout=15)
    lines = "".join(seen).splitlines() + rest.splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r.get("logger", "").startswith("uvicorn") for r in records)
    assert any("/subscribe 200" in r["message"] for r in records)  # the access log
    assert process.returncode == 0


def test_daemon_json_logs_while_a_long_send_runs(tmp_path):
    """A send that outlasts many polls: every line JSON, no max-instances noise."""
    from smtp_servers import Handler, start_server
    from test_daemon import Daemon, sending_today

    handler = Handler(delay=0.02)  # 60 messages on one connection: ~1.2 s, 6 polls
    with start_server(handler) as server:
        config = sending_today(tmp_path, server, 1, ["both"] * 60)
        daemon = Daemon(config, tmp_path / "run.log")
        try:
            daemon.wait_for(
                lambda: any(e.get("event") == "sent" for e in daemon.events()),
                timeout=120,
                what="the send to finish",
            )
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    assert len(handler.messages) == 60
    lines = (tmp_path / "run.log").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert not [r for r in records if "maximum number of running instances" in r["message"]]
    assert [r for r in records if r["level"] not in ("info", "debug")] == []
    assert [r["event"] for r in records if r.get("event") in ("sending", "sent")] == [
        "sending",
        "sent",
    ]
