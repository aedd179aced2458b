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
    """A bad configuration, or a file the configuration names and the program
    reads as settings (the paper links file): the CLI exits with status 2, as
    for a usage error, before anything is written."""
