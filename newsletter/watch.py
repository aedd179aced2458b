"""Which digest files have settled, what they hold, and one daemon per state folder.

`Watcher` tells, at each look at the digests folder, which files have kept the
same signature (mtime in ns, size in bytes) for `schedule.settle_seconds`: a
file being written is not read half-way. `DigestFolder` reads the settled
files into digests, keeping a bad file's last good version. `single_instance`
holds `state/run.lock` (flock) for the life of `newsletter run`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.digest import DigestReport, Skipped, check_paths, find_digest_files
from newsletter.errors import NewsletterError
from newsletter.model import Digest, DigestLimits

log = logging.getLogger("newsletter")

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


class DigestFolder:
    """The digests of a folder's settled files, each problem logged once.

    A file that turns bad (or clashes with another's date) keeps its last good
    version until it is fixed, and so does a file being rewritten until it
    settles: a typo must not unpublish. With `verbose`, each file that is not a
    digest is logged once while it stays there.
    """

    def __init__(
        self, folder: Path, settle_seconds: float, limits: DigestLimits, *, verbose: bool = False
    ) -> None:
        self.watcher = Watcher(folder, settle_seconds)
        self.limits = limits
        self.verbose = verbose
        self._by_file: dict[str, Digest] = {}
        self._reported_bad: set[tuple[str, Signature]] = set()
        self._reported_skipped: set[Path] = set()

    def settled(self) -> dict[Path, Signature]:
        """Look at the folder: its settled files and their signatures."""
        settled = self.watcher.settled()
        self._log_skipped()
        return settled

    def read(self, settled: dict[Path, Signature]) -> list[Digest]:
        """The digests of `settled` (from `settled()`), oldest first."""
        reports = check_paths(sorted(settled), self.limits)
        self._log_bad(reports, settled)
        by_file = {
            r.file: r.digest if r.ok and r.digest else self._by_file[r.file]
            for r in reports
            if (r.ok and r.digest) or r.file in self._by_file
        }
        for file, digest in self._by_file.items():
            if file not in by_file and self.watcher.is_present(Path(file)):
                by_file[file] = digest
        self._by_file = by_file
        return sorted(by_file.values(), key=lambda d: d.date)

    def _log_skipped(self) -> None:
        skipped = {item.path: item for item in self.watcher.skipped}
        if self.verbose:
            for path in sorted(set(skipped) - self._reported_skipped):
                log.info(
                    "skipped %s",
                    skipped[path],
                    extra={"event": "skipped", "file": str(path), "reason": skipped[path].reason},
                )
        self._reported_skipped = set(skipped)

    def _log_bad(self, reports: list[DigestReport], settled: dict[Path, Signature]) -> None:
        for report in reports:
            if report.ok:
                continue
            key = (report.file, settled.get(Path(report.file), (0, 0)))
            if key in self._reported_bad:
                continue
            self._reported_bad.add(key)
            for problem in report.errors:
                log.error(
                    "not published: %s",
                    problem,
                    extra={"event": "bad_digest", "file": report.file, "line": problem.line},
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
