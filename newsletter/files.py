"""Atomic, deterministic file output: a reader never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from newsletter.errors import file_error


def write_atomic(path: Path, data: bytes) -> None:
    """Write data to path via a temp file in the same folder and a rename.

    A reader sees the old file or the new one, never a part; on any failure
    the temp file is removed. NewsletterError (`errors.file_error`: the path,
    the cause, a hint) for a full disk, a read-only folder, permissions.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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
