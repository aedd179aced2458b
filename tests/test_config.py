"""Config loading: lookup order, relative paths, every bad key reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.errors import NewsletterError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    config = load_config()
    assert config.site.timezone == "Asia/Seoul"
    assert config.paths.digests == tmp_path / "examples" / "digests"
    assert config.email.transport == "file"
    assert config.server.public_url == config.site.base_url
    assert [e.value for e in config.editions] == ["ko", "en", "both"]
    assert config.db_url == f"sqlite:///{tmp_path / 'state' / 'newsletter.db'}"


def test_relative_paths_are_relative_to_the_config_folder(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    write(folder / "config.yaml", "paths:\n  digests: in\n  public: /srv/www\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(folder / "config.yaml")
    assert config.paths.digests == folder / "in"
    assert config.paths.public == Path("/srv/www")
    assert config.paths.state == folder / "state"


def test_lookup_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "config.yaml", "site:\n  title: from cwd\n")
    env_file = write(tmp_path / "env.yaml", "site:\n  title: from env\n")
    flag_file = write(tmp_path / "flag.yaml", "site:\n  title: 플래그\n")
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    assert load_config().site.title == "from cwd"
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(env_file))
    assert load_config().site.title == "from env"
    assert load_config(flag_file).site.title == "플래그"


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path / "config.yaml",
        "site:\n"
        "  titel: x\n"
        "  timezone: Mars/Olympus\n"
        "  base_url: ftp://x\n"
        "editions: [ko, fr]\n"
        "email:\n"
        "  transport: pigeon\n"
        "  smtp:\n"
        "    port: many\n"
        "    hots: x\n"
        "xyzzy: 1\n",
    )
    with pytest.raises(NewsletterError) as caught:
        load_config(path)
    text = caught.value.message
    assert text.startswith(f"{path}: 8 problems in the config:")
    for expected in (
        "site.titel: unknown key (did you mean 'title'?)",
        "site.timezone: unknown time zone 'Mars/Olympus'",
        "site.base_url: 'ftp://x' is not an http(s) URL",
        "editions.1: ",
        "email.transport: ",
        "email.smtp.port: ",
        "email.smtp.hots: unknown key (did you mean 'host'?)",
        "xyzzy: unknown key (known keys here: site, paths,",
    ):
        assert expected in text
    assert "README" in caught.value.hint


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path / "config.yaml", "site:\n  title: ok\n bad indent: [\n")
    with pytest.raises(NewsletterError) as caught:
        load_config(path)
    assert caught.value.message.startswith(f"{path}:3: not valid YAML")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NewsletterError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_subject_template_is_checked(tmp_path):
    path = write(tmp_path / "c.yaml", "email:\n  subject:\n    ko: '[논문] {when}'\n")
    with pytest.raises(
        NewsletterError, match=r"email.subject.ko: .*only \{date\}, \{count\} and \{papers\}"
    ):
        load_config(path)


def test_every_bad_subject_template_is_reported_at_once(tmp_path):
    text = (
        "email:\n  subject:\n    ko: 'ML {foo}'\n    en: '{date'\n"
        "  weekly_subject:\n    both: '{week} {weak}'\n"
    )
    with pytest.raises(NewsletterError) as caught:
        load_config(write(tmp_path / "c.yaml", text))
    message = caught.value.message
    assert "3 problems" in message
    assert "email.subject.ko: not a valid template ({foo} is not allowed)" in message
    assert "email.subject.en: not a valid template (" in message
    assert "email.weekly_subject.both: not a valid template ({weak} is not allowed)" in message
    assert "{week}" in message.split("email.weekly_subject.both")[1]  # a weekly field


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    path = write(tmp_path / "c.yaml", "email:\n  smtp:\n    password_env: RELAY_PASSWORD\n")
    config = load_config(path)
    monkeypatch.delenv("RELAY_PASSWORD", raising=False)
    with pytest.raises(NewsletterError, match=r"\$RELAY_PASSWORD"):
        config.email.smtp.password()
    monkeypatch.setenv("RELAY_PASSWORD", "s3cret")
    assert config.email.smtp.password() == "s3cret"
    monkeypatch.delenv("NEWSLETTER_SECRET", raising=False)
    with pytest.raises(NewsletterError, match="NEWSLETTER_SECRET"):
        config.secret()


def test_shipped_example_config_is_valid():
    config = load_config(Path(__file__).parent.parent / "config.yaml")
    assert config.paths.digests.is_dir()


@pytest.mark.parametrize(
    "template",
    ["{date.__class__}", "{count!r}", "{count:>{date}}", "{0}", "{when}", "{papers!s}"],
)
def test_subject_template_allows_only_bare_date_count_and_papers(tmp_path, template):
    path = write(tmp_path / "c.yaml", f"email:\n  subject:\n    en: '{template}'\n")
    with pytest.raises(NewsletterError, match=r"email.subject.en: not a valid template"):
        load_config(path)
