"""A real CLI subprocess whose standard error is read line by line as it comes:
tests wait for the line that says something happened, not for time to pass."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Watched:
    """A CLI subprocess whose stderr is read line by line as it comes."""

    def __init__(
        self,
        config: Path,
        *args: str,
        env: dict[str, str] | None = None,
        preexec_fn: Callable[[], Any] | None = None,
    ) -> None:
        command = [sys.executable, "-m", "newsletter", "--config", str(config), *args]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        full_env |= {"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"} | (env or {})
        self.process = subprocess.Popen(
            command,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.ended = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_for_line(self, text: str) -> bool:
        """Until a stderr line contains `text` (True) or stderr ends (False)."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.ended or any(text in line for line in self.lines), timeout=120
            )
            return any(text in line for line in self.lines)

    def finish(self) -> tuple[int, str, str]:
        stdout = self.process.stdout.read() if self.process.stdout else ""
        code = self.process.wait(120)
        self.reader.join(120)
        return code, stdout, "".join(self.lines)
