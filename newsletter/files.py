"""Atomic, deterministic file output: a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from newsletter.errors import file_error

# Temp files are `.NAME.XXXX.tmp` beside NAME (sweep_temps finds them by it).
_TEMP = ".tmp"


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path via a temp file in the same folder and a rename.

    A reader sees the old file or the new one, never a part; on any failure
    the temp file is removed. NewsletterError (`errors.file_error`: the path,
    the cause, a hint) for a full disk, a read-only folder, permissions.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP)
    except OSError as exc:
        raise file_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise file_error(exc, path) from exc
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write atomically unless the file already holds exactly these bytes."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, data)
    return True


def is_hidden(url_path: str) -> bool:
    """Whether a (percent-decoded) URL path names a dotfile or goes through a dot-folder.

    Such files are never served from paths.public: the build manifest
    (`.newsletter-manifest.json`), the temp files of `write_atomic`
    (`.NAME.XXXX.tmp`), and anyone's `.git` or `.env`.
    """
    return any(part.startswith(".") for part in url_path.replace("\\", "/").split("/"))


# Feed files by name, with the media types their specs register (RFC 4287 for
# Atom, the RSS Advisory Board's application/rss+xml, JSON Feed 1.1's
# application/feed+json); XML says its charset (RFC 7303), JSON has none (RFC 8259).
FEED_MEDIA_TYPES = {
    "atom.xml": "application/atom+xml; charset=utf-8",
    "rss.xml": "application/rss+xml; charset=utf-8",
    "feed.json": "application/feed+json",
}


def served_type(url_path: str) -> str | None:
    """The Content-Type both servers of paths.public (`serve`, `preview`) give a
    feed file (`FEED_MEDIA_TYPES`, by file name); None: the usual guess by extension."""
    return FEED_MEDIA_TYPES.get(url_path.rpartition("/")[2])


def write_many(files: list[tuple[Path, bytes]]) -> None:
    """Write many files atomically with one flush to disk for all of them.

    Each file goes to a temp file beside it; then the file system is flushed
    once (syncfs(2) on Linux, else an fsync per file), then every temp file is
    renamed into place. A reader never sees half a file, and after a crash
    each file holds its old bytes or its new ones (like write_atomic, without
    one disk flush per file: a site build writes thousands). NewsletterError
    (`errors.file_error`, naming the file) for a full disk, a read-only folder,
    permissions; the temp files not yet renamed are removed. The two steps
    are write_temps and commit_temps, for callers that gather temp files from
    several processes under one flush.
    """
    try:
        commit_temps(write_temps(files))
    except OSError as exc:
        raise file_error(exc) from exc


Temps = list[tuple[str, Path]]  # (temp file, the path it becomes)


def write_temps(files: list[tuple[Path, bytes]]) -> Temps:
    """Step one of write_many: each file's bytes in a temp file beside it
    (`.NAME.XXXX.tmp`, mode 0644), neither flushed to disk nor renamed yet.
    Raises OSError (a full disk...) naming the file it was writing (`filename`),
    after deleting the temp files it made."""
    temps: Temps = []
    folders: set[Path] = set()
    current: Path | None = None  # the file being written or renamed, for the error
    try:
        for path, data in files:
            current = path
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP)
            temps.append((tmp, path))
            try:  # plain system calls: no file object, no chmod by path
                _write_all(fd, data)
                os.fchmod(fd, 0o644)
            finally:
                os.close(fd)
    except BaseException as exc:
        discard_temps(temps)
        _name(exc, current)
        raise
    return temps


def commit_temps(temps: Temps) -> None:
    """Step two of write_many: one flush to disk for all these temp files, then
    each renamed into place, in the given order. On an error the temp files
    not yet renamed are deleted (the files they would replace are untouched);
    an OSError names the file (`filename`)."""
    renamed = 0
    current: Path | None = None
    try:
        if temps:
            _flush([tmp for tmp, _ in temps])
        for done, (tmp, path) in enumerate(temps, 1):
            current = path
            os.replace(tmp, path)
            renamed = done
    except BaseException as exc:
        discard_temps(temps[renamed:])
        _name(exc, current)
        raise


def _name(exc: BaseException, path: Path | None) -> None:
    """An OSError names the file being written, `path`, not its temp file (and
    os.write names none); it still pickles, so a worker process can hand it back."""
    if isinstance(exc, OSError) and path is not None:
        exc.filename = str(path)


def discard_temps(temps: Temps) -> None:
    """Delete temp files of write_temps that will not be committed."""
    for tmp, _ in temps:
        Path(tmp).unlink(missing_ok=True)


def sweep_temps(paths: Iterable[Path]) -> None:
    """Delete every temp file write_temps may have left for these paths
    (`.NAME.XXXX.tmp` beside NAME), when the list of them is lost: a process
    that wrote them died before it could say which."""
    import glob

    for path in paths:
        for temp in path.parent.glob(f".{glob.escape(path.name)}.*{_TEMP}"):
            temp.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush(paths: list[str]) -> None:
    """Make the data of these files durable: one syncfs(2) for their file
    system where the C library has it, else fsync(2) on each."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    syncfs = getattr(ctypes.CDLL(name, use_errno=True), "syncfs", None) if name else None
    if syncfs is not None:
        one_per_device = {os.stat(path).st_dev: path for path in paths}
        for path in one_per_device.values():
            fd = os.open(path, os.O_RDONLY)
            try:
                if syncfs(fd) != 0:
                    break
            finally:
                os.close(fd)
        else:
            return
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
