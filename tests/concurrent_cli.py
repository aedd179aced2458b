"""Run several real CLI processes so that they really start at once.

Process start-up (interpreter, imports) takes longer than opening a database,
so N processes launched in a row hardly overlap. Here each child imports the
CLI and everything it opens a database with, says it is ready on a pipe, and
blocks reading a second pipe; once all are ready the test closes that pipe and
every child goes on at the same instant: synchronised on a real event.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Sequence

_CHILD = """
import os, sys
import sqlalchemy, email_validator
import newsletter.cli, newsletter.config, newsletter.store
go, ready = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"r")
os.read(go, 1)
sys.argv = ["newsletter", *sys.argv[3:]]
newsletter.cli.main()
"""


def run_together(
    commands: Sequence[Sequence[str]], env: dict[str, str] | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """Run `newsletter ARGS` for each ARGS in `commands`, released together."""
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    full_env |= {"PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"} | (env or {})
    processes = []
    try:
        for args in commands:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, str(go_read), str(ready_write), *args],
                    pass_fds=(go_read, ready_write),
                    env=full_env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        os.close(ready_write)
        ready_write = -1
        ready = 0
        while ready < len(processes):
            readable, _, _ = select.select([ready_read], [], [], 120)
            got = os.read(ready_read, len(processes)) if readable else b""
            assert got, "a child exited (or hung) before it was ready"
            ready += len(got)
    finally:
        for fd in (go_read, go_write, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)  # closing go_write releases every child at once
    results = []
    for process, args in zip(processes, commands, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    return results
