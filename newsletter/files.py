"""Atomic, deterministic file output: a reader never sees half a file."""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def write_temps(files: list[tuple[Path, bytes]], *, fresh: bool = False) -> Temps:
    """Step one of write_many: each file's bytes in a temp file beside it
    (`.NAME.XXXX.tmp`, mode 0644), neither flushed to disk nor renamed yet.
    fresh: the files are in a folder that nobody reads yet and that holds none
    of them (a Staging folder): each is written under its own name, which is
    its own temp file (its folder is renamed into place as a whole).
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
            if fresh:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
                tmp = str(path)
            else:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP)
            temps.append((tmp, path))
            try:  # plain system calls: no file object, no chmod by path
                _write_all(fd, data)
                # A fresh file was made 0644 less the umask (or a default
                # ACL): a chmod only where that took bits away, as a chmod is
                # one more inode change for the file system's journal.
                if not fresh or os.fstat(fd).st_mode & 0o777 != 0o644:
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
    try:
        if temps:
            _flush([tmp for tmp, _ in temps])
    except BaseException:
        discard_temps(temps)
        raise
    _rename_all(temps)


def _rename_all(temps: Temps) -> None:
    renamed = 0
    current: Path | None = None
    try:
        for done, (tmp, path) in enumerate(temps, 1):
            current = path
            os.replace(tmp, path)
            renamed = done
    except BaseException as exc:
        discard_temps(temps[renamed:])
        _name(exc, current)
        raise


class Staging:
    """The first version of a folder that does not exist yet, written whole in
    a sibling folder, `.NAME.building-PID-RANDOM`, and renamed into place at
    once (rename(2)): its files need no temp files and no renames of their own
    (write_temps with fresh=True), and nobody sees a part of what it holds
    when it is renamed. Used by site builds for a public folder that is not
    there yet (the pages, feeds and sitemaps; the search index follows).

    The process writing it holds an flock(2) on the folder until it is
    renamed or deleted: the kernel lets go when the process ends, however it
    ends (kill -9), and a folder nobody holds is a dead build's, deleted by
    the next site build of the same folder (`sweep`). A PID alone would not
    say: containers and other machines sharing the folder reuse them."""

    def __init__(self, folder: Path, path: Path, lock: int) -> None:
        self.folder = folder  # where it goes
        self.path = path  # where it is written
        self._lock = lock  # the folder's descriptor, flock-ed

    @classmethod
    def start(cls, folder: Path) -> Staging | None:
        """A new staging folder for `folder`, or None when `folder` exists
        (even as a dangling symlink, which a rename would replace): its files
        are then replaced one by one (write_temps, commit_temps). Either way
        dead builds' staging folders are swept first. OSError when the
        staging folder cannot be made."""
        import secrets

        cls.sweep(folder)
        if os.path.lexists(folder):
            return None
        folder.parent.mkdir(parents=True, exist_ok=True)
        path = folder.parent / f".{folder.name}{_STAGING}{os.getpid()}-{secrets.token_hex(4)}"
        path.mkdir()
        lock = _hold(path)
        if lock is None:  # no flock here: a sweep could not tell it from a dead one's
            _remove_tree(path)
            return None
        return cls(folder, path, lock)

    @staticmethod
    def sweep(folder: Path) -> None:
        """Delete the staging folders of `folder` that no process holds."""
        import glob

        for path in folder.parent.glob(f".{glob.escape(folder.name)}{_STAGING}*"):
            lock = _hold(path)
            if lock is not None:
                try:
                    _remove_tree(path)
                finally:
                    os.close(lock)

    def commit(self, temps: Temps) -> None:
        """Flush its files to disk (one syncfs, as commit_temps), then rename
        it to its folder (rename(2) also replaces an empty folder). If the
        folder was made meanwhile and holds something (another build of it),
        its files are renamed into that folder one by one instead. Raises
        OSError naming the file or folder."""
        _flush([tmp for tmp, _ in temps], devices=[str(self.path)])
        try:
            os.rename(self.path, self.folder)
            self._release()
            return
        except OSError as exc:
            if not os.path.lexists(self.folder):
                exc.filename = str(self.folder)
                raise
        moved = []
        for tmp, path in temps:
            target = self.folder / path.relative_to(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            moved.append((tmp, target))
        _rename_all(moved)
        self.discard()

    def discard(self) -> None:
        """Delete the staging folder and everything in it."""
        _remove_tree(self.path)
        self._release()

    def _release(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1


_STAGING = ".building-"


def _hold(path: Path) -> int | None:
    """A descriptor of folder `path` with an exclusive flock(2) on it, or None
    when another process holds it (or it cannot be locked)."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


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


@functools.cache
def _syncfs() -> Any:
    """The C library's syncfs(2) (Linux), or None. Looked up among the symbols
    this process has loaded (CDLL(None)): ctypes.util.find_library runs
    ldconfig, 25 ms of every publish."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    except (OSError, TypeError):  # TypeError: Windows has no CDLL(None)
        return None


def flush_folder(path: str) -> None:
    """Start making durable what was written to the file system of `path`
    (one syncfs; nothing where there is none): an early flush, so that a
    later one (commit_temps, Staging.commit) has less to wait for. OSError
    is ignored: the later flush reports it."""
    if _syncfs() is not None:
        with contextlib.suppress(OSError):
            _flush([], devices=[path])


def _flush(paths: list[str], devices: list[str] | None = None) -> None:
    """Make the data of these files durable: one syncfs(2) for their file
    system where the C library has it, else fsync(2) on each. devices: a path
    on each file system they are on, when the caller knows (else each file is
    looked at)."""
    syncfs = _syncfs()
    if syncfs is not None:
        if devices is None:
            devices = list({os.stat(path).st_dev: path for path in paths}.values())
        for path in devices:
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
