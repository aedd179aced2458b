"""One line per event, as text for people or JSON for log collectors.

`setup_logging` owns stderr: the program's own lines ('newsletter' logger, INFO
and up), the warnings of every library (APScheduler, uvicorn, SQLAlchemy ...,
through the root logger), Python warnings (`warnings.warn`, via
`logging.captureWarnings`) and uncaught exceptions in threads all go through
one handler, so with `json` every line on stderr is one JSON object.

A log line carries text from outside: request paths, relay replies, digest
lines and file names. `printable` escapes what could forge a line or drive a
terminal in it, and `EscapeControls` applies it to every record the CLI logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from typing import Any

# Attributes every LogRecord has; anything else was passed in `extra=` (uvicorn's
# color_message is its message with terminal colours: left out).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

log = logging.getLogger("newsletter")


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON object: time, level, logger, message, the `extra=`
    fields, and `traceback` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.name != "newsletter" and not record.name.startswith("newsletter."):
            data["logger"] = record.name  # a library's line: say whose
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


# C0 and C1 controls and DEL (CR, LF, ESC, NUL...), the Unicode line and
# paragraph separators, and the bidirectional overrides and isolates (which
# reorder what a terminal shows).
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character written as an escape (ESC -> \\x1b,
    CR LF -> \\x0d\\x0a, U+2028 -> \\u2028): one log line stays one line,
    and shows what was sent. Hangul and other printable text is unchanged."""
    return _UNPRINTABLE.sub(_escape, text)


def _printable_arg(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value  # for %d and %.1f
    message = getattr(value, "message", None)
    hint = getattr(value, "hint", None)
    if isinstance(value, Exception) and isinstance(message, str):
        # A NewsletterError: message and hint on one line.
        return printable(f"{message} (hint: {hint})" if hint else message)
    return printable(value if isinstance(value, str) else str(value))


class EscapeControls(logging.Filter):
    """A handler filter: the message, its arguments and its `extra` fields go
    through `printable` (tracebacks, which are the program's own, do not)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = printable(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_printable_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _printable_arg(arg) for key, arg in record.args.items()}
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, printable(value))
        return True


class _OneHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler setup_logging installs (so a second call replaces, not adds)."""


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every log line to stderr in the chosen format ("text" or "json").

    The 'newsletter' loggers log from `level`; libraries from WARNING (their
    INFO lines are chatter, e.g. APScheduler's at every poll). Python warnings
    and exceptions escaping a thread become log records. Calling it again
    switches the format. Every line is escaped (`EscapeControls`).
    """
    handler = _OneHandler(sys.stderr)
    handler.addFilter(EscapeControls())  # client and digest text: no forged lines
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, _OneHandler)] + [handler]
    root.setLevel(logging.WARNING)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    logging.captureWarnings(True)
    threading.excepthook = _thread_exception


def json_enabled() -> bool:
    """Whether setup_logging chose JSON (the CLI's own error lines follow suit)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in log.handlers)


def _thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
    log.error("uncaught exception in thread %s", name, exc_info=exc_info)  # type: ignore[arg-type]
