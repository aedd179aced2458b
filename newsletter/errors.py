"""The one user-error type: a message, and a hint that says how to fix it."""

from __future__ import annotations


class NewsletterError(Exception):
    """A mistake the user can fix: bad input, bad config, unreachable server.

    The CLI prints it without a traceback (unless --debug); library callers can
    catch it like any exception.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class DigestError(NewsletterError):
    """A digest file that cannot be published; names the file and line."""

    def __init__(self, file: str, line: int | None, message: str, hint: str | None = None):
        self.file = file
        self.line = line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}", hint)
        self.bare_message = message


class ConfigError(NewsletterError):
    """A bad configuration, the environment it relies on (a missing or weak
    secret), or a file it names and the program reads as settings (the paper
    links file): the CLI exits with status 2, as for a usage error, before
    anything is written."""


class FileError(NewsletterError, OSError):
    """A file that could not be written (or read): a NewsletterError with the path,
    the cause and a hint, and still the OSError it was (`errno`, `strerror`,
    `filename`), so code that catches OSError keeps working."""

    def __init__(self, message: str, hint: str, cause: OSError, path: str) -> None:
        super().__init__(message, hint)
        self.errno = cause.errno
        self.strerror = cause.strerror
        self.filename = path


def file_error(exc: OSError, path: object = None, doing: str = "write") -> FileError:
    """One line for a failed file operation: the path, the cause, and what to do.

    `path` defaults to the exception's filename; `doing` is the verb ("write",
    "create", "read"). The hint depends on errno: a full disk (ENOSPC, EDQUOT),
    a read-only file system (EROFS), permissions (EACCES, EPERM).
    """
    import errno
    import os

    where = str(path if path is not None else exc.filename or "a file")
    folder = os.path.dirname(where) or "."
    cause = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = (
            f"the disk holding {folder} is full: free some space (df -h {folder}), then run "
            "again; files are written whole or not at all, and a rerun finishes the job"
        )
    elif exc.errno == errno.EROFS:
        hint = f"{folder} is on a read-only file system: remount it writable or change the paths in the config"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        hint = f"this user may not write there: check the owner and permissions of {folder}"
    else:
        hint = f"check {folder} and the paths in the config"
    return FileError(f"cannot {doing} {where}: {cause}", hint, exc, where)
