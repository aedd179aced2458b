"""A throw-away PostgreSQL server for the store and link-cache tests.

`postgres_server()` yields the SQLAlchemy URL of a fresh cluster (initdb, then
pg_ctl start on a Unix socket in a temporary folder, as user postgres when
run as root) and stops it afterwards. initdb and pg_ctl come from
tests/real_parts.py; a missing or failing PostgreSQL skips, or fails under
NEWSLETTER_REQUIRE_REAL=1. conftest.py offers it as the module-scoped
`mail_pg_url`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import real_parts
from smtp_servers import free_port


def _start():
    """Start a throw-away PostgreSQL server; return its URL and how to stop it.

    initdb and pg_ctl come from real_parts (PATH, pg_config, /usr/lib/postgresql);
    a missing or failing PostgreSQL skips, or fails under NEWSLETTER_REQUIRE_REAL=1.
    """
    bindir = real_parts.postgres_bindir()
    initdb = str(bindir / "initdb")
    real_parts.import_real("psycopg", "psycopg[binary]")
    folder = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = real_parts.runuser()
        run_as = [str(runuser), "-u", "postgres", "--"]
        try:
            shutil.chown(folder, "postgres")
        except LookupError:
            shutil.rmtree(folder, ignore_errors=True)
            real_parts.require_real("PostgreSQL", "no 'postgres' user to run the server as")
    data = folder / "data"
    port = free_port()
    try:
        subprocess.run(
            [*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(folder / "log"),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=''",
                "start",
            ],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        log = folder / "log"
        detail = getattr(exc, "stderr", b"") or b""
        if log.exists():
            detail += log.read_bytes()[-2000:]
        shutil.rmtree(folder, ignore_errors=True)
        real_parts.require_real(
            "PostgreSQL",
            f"cannot start a cluster with {bindir}: {exc}: {detail.decode(errors='replace')}",
        )
    url = f"postgresql+psycopg://postgres@/postgres?host={folder}&port={port}"
    return url, run_as, initdb, data, folder


def postgres_server() -> Iterator[str]:
    """Start a cluster, yield its URL, stop it and remove its files."""
    url, run_as, initdb, data, folder = _start()
    yield url
    subprocess.run(
        [
            *run_as,
            str(Path(initdb).with_name("pg_ctl")),
            "-D",
            str(data),
            "-m",
            "immediate",
            "stop",
        ],
        capture_output=True,
    )
    shutil.rmtree(folder, ignore_errors=True)


def fresh_pg_database(server_url: str, prefix: str) -> str:
    """A new, empty database on the test cluster of `server_url`; its URL."""
    import secrets

    import sqlalchemy as sa

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return server_url.replace("/postgres?", f"/{name}?")
