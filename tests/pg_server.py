"""A throw-away PostgreSQL server for the store and link-cache tests.

`postgres_server()` yields the SQLAlchemy URL of a fresh server (initdb, then
pg_ctl start on a Unix socket in a temporary folder, as user postgres when
run as root) and stops it afterwards; it skips the test where PostgreSQL or
psycopg is missing. conftest.py offers it as the module-scoped `mail_pg_url`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtp_servers import free_port


def _start():
    """Start a throw-away PostgreSQL server (skip if unavailable): its URL and files."""
    initdb = shutil.which("initdb") or (
        shutil.which("pg_ctl") and str(Path(shutil.which("pg_ctl")).with_name("initdb"))
    )
    if not initdb or not Path(initdb).exists():
        pytest.skip("PostgreSQL (initdb/pg_ctl) not installed")
    pytest.importorskip("psycopg")
    folder = Path(tempfile.mkdtemp(prefix="nl-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
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
                str(Path(initdb).with_name("pg_ctl")),
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
    except (subprocess.CalledProcessError, KeyError, LookupError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot start PostgreSQL: {exc}")
    url = f"postgresql+psycopg://postgres@/postgres?host={folder}&port={port}"
    return url, run_as, initdb, data, folder


def postgres_server() -> Iterator[str]:
    """Start a server, yield its URL, stop it and remove its files."""
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
