"""Which digest files have settled, and one daemon per state folder.

`Watcher` tells, at each look at the digests folder, which files have kept the
same signature (mtime in ns, size in bytes) for `schedule.settle_seconds`: a
file being written is not read half-way. `single_instance` holds
`state/run.lock` (flock) for the life of `newsletter run`.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.digest import Skipped, find_digest_files
from newsletter.errors import NewsletterError

Signature = tuple[int, int]  # (mtime_ns, size) of a file


@dataclass
class Watcher:
    """Which files of a folder have stopped changing for `settle_seconds`."""

    folder: Path
    settle_seconds: float
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Path, tuple[Signature, float]] = field(default_factory=dict)
    # Files of the last look that are not digests (digest.find_digest_files).
    skipped: tuple[Skipped, ...] = ()

    def settled(self) -> dict[Path, Signature]:
        now = self.clock()
        current: dict[Path, Signature] = {}
        found = find_digest_files([self.folder]) if self.folder.is_dir() else None
        self.skipped = found.skipped if found else ()
        for path in found.files if found else ():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            current[path] = (stat.st_mtime_ns, stat.st_size)
        for path, signature in current.items():
            previous = self._seen.get(path)
            if previous is None or previous[0] != signature:
                self._seen[path] = (signature, now)
        for path in set(self._seen) - set(current):
            del self._seen[path]
        return {
            path: signature
            for path, (signature, since) in self._seen.items()
            if now - since >= self.settle_seconds
        }

    def is_present(self, path: Path) -> bool:
        """Whether the last look at the folder saw this file (settled or not)."""
        return path in self._seen

    def unsettled(self) -> list[Path]:
        now = self.clock()
        return sorted(
            p for p, (_, since) in self._seen.items() if now - since < self.settle_seconds
        )


@contextmanager
def single_instance(state: Path) -> Iterator[None]:
    """Hold `state/run.lock` for the life of the daemon; refuse a second one."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "run.lock"
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise NewsletterError(
            f"another 'newsletter run' is already using {state} (pid {owner})",
            hint="stop it first; only one daemon may run per state folder",
        ) from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
