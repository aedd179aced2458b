"""A weak $NEWSLETTER_SECRET is a configuration error wherever the secret is
required: `serve`, sending through SMTP (`publish`, `send-test`, `run`) and
bounce processing. Real processes, a real aiosmtpd relay that must see nothing."""

from __future__ import annotations

import mailbox

import pytest
import yaml
from helpers import run_cli
from smtp_servers import Handler, free_port, start_server
from test_kill import smtp_project

from newsletter.config import MIN_SECRET_BYTES, SECRET_ENV, config_from_dict
from newsletter.errors import ConfigError

# 15 bytes; and a Hangul one of 5 characters but 15 UTF-8 bytes: bytes count.
WEAK = ["weak-k3y", "x" * (MIN_SECRET_BYTES - 1), "비밀번호다"]


def _refused(result, secret: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"${SECRET_ENV} is too short ({len(secret.encode())} bytes" in result.stderr
    assert "hint:" in result.stderr and "secrets.token_hex(32)" in result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr  # the secret itself is never printed


@pytest.mark.parametrize("secret", WEAK)
def test_serve_refuses_a_weak_secret(tmp_path, secret) -> None:
    result = run_cli("serve", "--port", str(free_port()), cwd=tmp_path, env={SECRET_ENV: secret})
    _refused(result, secret)
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_smtp_sending_and_the_daemon_refuse_a_weak_secret(tmp_path) -> None:
    handler = Handler()
    with start_server(handler) as server:
        command = smtp_project(tmp_path, server, 3)
        config = ["--config", command[command.index("--config") + 1]]
        for args in (
            command[3:],  # publish --date ... --force
            [*config, "send-test", "--date", "2025-04-04", "--to", "me@example.org"],
            [*config, "run"],
        ):
            _refused(run_cli(*args, env={SECRET_ENV: "weak-k3y"}), "weak-k3y")
        assert handler.messages == []  # nothing reached the relay
        # A secret of exactly 16 bytes is enough.
        sent = run_cli(*command[3:], env={SECRET_ENV: "x" * MIN_SECRET_BYTES})
        assert sent.returncode == 0, sent.stderr
    assert len(handler.messages) == 3


def test_bounce_processing_refuses_a_weak_secret(tmp_path) -> None:
    box = tmp_path / "bounces"
    mailbox.Maildir(box, create=True)
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "paths": {"state": "state", "public": "public", "outbox": "outbox"},
                "email": {
                    "transport": "smtp",
                    "from": "ML Papers <papers@example.org>",
                    "smtp": {"host": "127.0.0.1", "port": free_port(), "security": "none"},
                },
                "bounces": {"mailbox": f"maildir:{box}"},
            }
        ),
        encoding="utf-8",
    )
    result = run_cli("--config", str(config), "bounces", "process", env={SECRET_ENV: "weak-k3y"})
    _refused(result, "weak-k3y")


def test_the_file_transport_needs_no_secret_and_a_set_one_may_be_anything(
    tmp_path, monkeypatch
) -> None:
    config = config_from_dict({"paths": {"state": "state"}}, base=tmp_path)
    monkeypatch.setenv(SECRET_ENV, "weak-k3y")
    assert config.secret(required=False) == b"weak-k3y"
    with pytest.raises(ConfigError, match=r"\$NEWSLETTER_SECRET is too short \(8 bytes"):
        config.secret(required=True)
    monkeypatch.setenv(SECRET_ENV, "비밀번호다비")  # 6 characters, 18 bytes
    assert config.secret(required=True) == "비밀번호다비".encode()
