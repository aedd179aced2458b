"""The email side through the real CLI: subscribers, dry runs, send-test, status."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json


def add(cli, project, address, edition="ko", *extra):
    result = cli("subscribers", "add", address, "--edition", edition, *extra, cwd=project)
    assert result.returncode == 0, result.stderr
    return result


def test_subscribers_add_list_remove(cli, project):
    assert add(cli, project, " Kim@EXAMPLE.org ", "both", "--name", "김철수").stdout.startswith(
        "Kim@example.org: active, edition both"
    )
    add(cli, project, "reader@example.org", "en")
    listed = json.loads(cli("subscribers", "list", "--json", cwd=project).stdout)
    daily = {"cadence": "daily", "topics": [], "cadence_from": None}
    assert listed == [
        {"email": "Kim@example.org", "edition": "both", "state": "active", "name": "김철수"}
        | daily,
        {"email": "reader@example.org", "edition": "en", "state": "active", "name": ""} | daily,
    ]
    removed = cli("subscribers", "remove", "kim@example.org", cwd=project)
    assert removed.returncode == 0 and "unsubscribed" in removed.stdout
    active = json.loads(
        cli("subscribers", "list", "--state", "active", "--json", cwd=project).stdout
    )
    assert [s["email"] for s in active] == ["reader@example.org"]
    # Re-adding someone who left needs the owner's explicit say-so.
    again = cli("subscribers", "add", "kim@example.org", cwd=project)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert "hint:" in again.stderr
    add(cli, project, "kim@example.org", "ko", "--reactivate")


def test_bad_address_is_a_clear_error(cli, project):
    result = cli("subscribers", "add", "not-an-address", cwd=project)
    assert result.returncode == 1
    assert "'not-an-address' is not a valid email address" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_reports_bad_rows_by_line_and_keeps_good_ones(cli, project):
    rows = "email,edition,name\na@example.org,ko,에이\nbroken,en\nb@example.org,fr\nc@example.org,both\n"
    (project / "list.csv").write_text(rows, encoding="utf-8")
    result = cli("subscribers", "import", "list.csv", cwd=project)
    assert result.returncode == 1
    assert "list.csv:3: " in result.stdout and "broken" in result.stdout
    assert "list.csv:4: unknown edition 'fr'" in result.stdout
    assert "2 added" in result.stdout and "2 bad rows" in result.stdout
    exported = cli("subscribers", "export", cwd=project).stdout
    table = list(csv.DictReader(io.StringIO(exported)))
    assert [(r["email"], r["edition"], r["name"]) for r in table] == [
        ("a@example.org", "ko", "에이"),
        ("c@example.org", "both", ""),
    ]


def test_dry_run_says_who_would_get_mail_and_sends_nothing(cli, project):
    add(cli, project, "a@example.org", "ko")
    add(cli, project, "b@example.org", "both")
    result = cli("publish", "--date", "2025-04-04", "--dry-run", "--force", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "would send 1 × ko: a@example.org" in result.stdout
    assert "would send 1 × both: b@example.org" in result.stdout
    assert "email: 2 messages would be sent" in result.stdout
    assert not (project / "outbox").exists()


def test_publish_emails_once_and_too_old_needs_force(cli, project):
    add(cli, project, "a@example.org", "ko")
    late = cli("publish", "--date", "2025-04-04", cwd=project)
    assert late.returncode == 0, late.stderr
    assert "not emailed; add --force to send it anyway" in late.stdout
    assert late.stderr.count("not emailed") == 0 and late.stdout.count("not emailed") == 1
    assert not (project / "outbox").exists()
    sent = cli("publish", "--date", "2025-04-04", "--force", cwd=project)
    assert "email: 1 sent, 0 failed, 0 skipped" in sent.stdout
    [eml] = (project / "outbox" / "2025-04-04").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"] == "[ML Papers] 2025년 4월 4일 · 논문 4편"
    again = cli("publish", "--date", "2025-04-04", "--force", cwd=project)
    assert "email: 0 sent, 0 failed, 1 skipped" in again.stdout


def test_send_test_is_not_recorded(cli, project):
    result = cli(
        "send-test",
        "--date",
        "2025-05-19",
        "--to",
        "editor@example.org",
        "--edition",
        "en",
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    [eml] = (project / "outbox" / "2025-05-19" / "test").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["Subject"].startswith("[TEST]")
    status = json.loads(cli("status", "--json", cwd=project).stdout)
    assert status["deliveries"] == {}


def test_status_json(cli, project):
    add(cli, project, "a@example.org", "ko")
    cli("subscribers", "add", "b@example.org", cwd=project)
    cli("subscribers", "remove", "b@example.org", cwd=project)
    cli("publish", "--date", "2025-04-04", "--force", cwd=project)
    data = json.loads(cli("status", "--json", cwd=project).stdout)
    assert data["last_published"] == "2025-04-04"
    assert data["subscribers"] == {"active": 1, "unsubscribed": 1}
    assert data["deliveries"] == {"2025-04-04": {"sent": 1}}
    assert data["next_send"] is None  # the samples are too old to email
    assert data["next_weekly_send"] is None
    text = cli("status", cwd=project).stdout
    assert "last published: 2025-04-04" in text and "2025-04-04: 1 sent" in text
    assert "next send: none" in text and "next weekly send: none" in text


def test_import_reports_a_line_that_is_not_utf8(cli, project):
    rows = (
        b"a@example.org,ko\n"
        + b"b@example.org,en,\xc7\xd1\xb1\xdb\n"
        + "김@example.org,both,김철수\n".encode()
    )
    (project / "list.csv").write_bytes(rows)
    result = cli("subscribers", "import", "list.csv", cwd=project)
    assert result.returncode == 1
    assert "list.csv:2: not UTF-8 text" in result.stdout
    assert "2 added" in result.stdout


def test_hangul_address_keeps_its_name_in_the_outbox(cli, project):
    add(cli, project, "김철수@example.org", "ko")
    assert cli("publish", "--date", "2025-04-04", "--force", cwd=project).returncode == 0
    assert (project / "outbox" / "2025-04-04" / "김철수@example.org.eml").is_file()
