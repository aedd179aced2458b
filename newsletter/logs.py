"""One line per event, as text for people or JSON for log collectors.

A log line carries text from outside: request paths, relay replies, digest
lines and file names. `printable` escapes what could forge a line or drive a
terminal in it, and `EscapeControls` applies it to every record the CLI logs.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

# Attributes every LogRecord has; anything else was passed in `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
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


def setup_logging(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send the 'newsletter' logger to stderr in the chosen format (escaped:
    `EscapeControls`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(EscapeControls())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
    logger = logging.getLogger("newsletter")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
