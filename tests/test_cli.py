"""The real CLI in a subprocess: exit codes, messages, JSON, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import SAMPLE_DIGESTS


def test_check_sample_folder(cli):
    result = cli("check", str(SAMPLE_DIGESTS))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("2025-01-22    4 entries  ")
    assert lines[1].startswith("2025-04-04    4 entries  ")
    assert lines[2].startswith("2025-05-19    6 entries  ")
    assert "3 files checked, 0 bad" in result.stderr


def test_check_defaults_to_paths_digests(cli, project):
    result = cli("check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_check_json(cli):
    result = cli("check", "--json", str(SAMPLE_DIGESTS / "2025-04-04.txt"))
    assert result.returncode == 0
    [report] = json.loads(result.stdout)
    assert report["date"] == "2025-04-04"
    assert report["warnings"] == [] and report["errors"] == []
    assert set(report["entries"][0]) == {
        "title",
        "authors",
        "abstract",
        "comment_ko",
        "comment_en",
        "tags",
    }
    assert report["entries"][0]["comment_ko"].startswith("수학 및 코드 데이터 371B")
    assert report["entries"][3]["authors"][-1] == "Jensen (Jinghao)Zhou"


def test_publish_and_build_say_the_warnings_check_says(cli, project):
    """A missing comment is a warning naming FILE:LINE wherever the digest is published."""
    warn = project / "digests" / "2025-04-12.txt"
    warn.write_text("2025-04-12\nT\n(A)\nAbstract.\n한국어 설명.\n#t\n", encoding="utf-8")
    line = f"warning: {warn}:2: entry 'T' has no English comment"
    published = cli("publish", "--date", "2025-04-12", "--no-email", cwd=project)
    assert published.returncode == 0 and line in published.stderr
    other = cli("publish", "--date", "2025-04-04", "--no-email", cwd=project)
    assert other.returncode == 0 and "no English comment" not in other.stderr
    built = cli("build", cwd=project)
    assert built.returncode == 0 and built.stderr.count(line) == 1


def test_a_missing_digests_folder_is_named_by_its_key(cli, project):
    (project / "config.yaml").write_text("paths:\n  digests: nowhere\n", encoding="utf-8")
    for args in (("check",), ("build",), ("publish", "--date", "2025-04-04", "--no-email")):
        result = cli(*args, cwd=project)
        assert result.returncode == 2, args
        assert f"the digests folder {project / 'nowhere'} does not exist (paths.digests)" in (
            result.stderr
        )


def test_check_bad_file_and_warnings(cli, tmp_path):
    (tmp_path / "bad.txt").write_text("2025년 2월 30일\n", encoding="utf-8")
    (tmp_path / "warn.txt").write_text(
        "2025-04-04\nT\n(A)\nAbstract.\n한국어.\n#t", encoding="utf-8"
    )
    result = cli("check", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path / 'bad.txt'}:1: impossible date '2025년 2월 30일'" in result.stdout
    assert f"warning: {tmp_path / 'warn.txt'}:2: entry 'T' has no English comment" in result.stdout
    assert "Traceback" not in result.stderr
    data = json.loads(cli("check", "--json", str(tmp_path)).stdout)
    by_file = {entry["file"]: entry for entry in data}
    assert by_file[str(tmp_path / "bad.txt")]["date"] is None
    assert by_file[str(tmp_path / "bad.txt")]["errors"][0].endswith(
        "impossible date '2025년 2월 30일': day is out of range for month"
    )


def test_duplicate_dates_fail(cli, tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("2025-04-04\nT\n(A)\nAb.\n코.\nE.\n#t", encoding="utf-8")
    result = cli("check", "--json", str(tmp_path))
    assert result.returncode == 1
    assert all("same date 2025-04-04" in r["errors"][0] for r in json.loads(result.stdout))


def test_usage_and_config_errors_exit_2(cli, tmp_path):
    assert cli("check", str(tmp_path / "missing")).returncode == 2
    (tmp_path / "config.yaml").write_text("site:\n  titel: x\n", encoding="utf-8")
    result = cli("--config", str(tmp_path / "config.yaml"), "check")
    assert result.returncode == 2
    assert "site.titel: unknown key (did you mean 'title'?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(cli, tmp_path):
    result = cli("--debug", "--config", str(tmp_path / "nope.yaml"), "check")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "NewsletterError" in result.stderr


def test_version_and_module_entry_point(cli):
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("newsletter, version ")


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from newsletter.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='newsletter')\nexcept SystemExit: pass\n"
        "heavy = [m for m in ('premailer', 'feedgen', 'apscheduler', 'sqlalchemy', 'jinja2',"
        " 'pydantic', 'yaml', 'babel', 'lxml') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Commands:" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "HEAVY="


def test_check_with_paths_still_validates_the_config(cli, tmp_path):
    (tmp_path / "config.yaml").write_text("site:\n  titel: x\n", encoding="utf-8")
    result = cli("--config", str(tmp_path / "config.yaml"), "check", str(SAMPLE_DIGESTS))
    assert result.returncode == 2
    assert "site.titel: unknown key" in result.stderr


def test_a_bad_database_url_is_a_config_error(cli, tmp_path):
    (tmp_path / "config.yaml").write_text("database_url: 'nope://'\n", encoding="utf-8")
    for command in (["status"], ["subscribers", "list"]):
        result = cli("--config", str(tmp_path / "config.yaml"), *command)
        assert result.returncode == 2, command
        assert "database_url: 'nope://' is not a usable SQLAlchemy URL" in result.stderr
        assert "Traceback" not in result.stderr
