"""logs.py: one line per event, text for people, JSON for collectors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.logs import JsonFormatter, setup_logging


def record(message="sent %s", *args, exc_info=None, **extra):
    logger = logging.getLogger("newsletter.test")
    return logger.makeRecord(
        "newsletter.test", logging.WARNING, __file__, 1, message, args, exc_info, extra=extra
    )


def test_json_line_has_time_level_message_and_every_extra():
    line = JsonFormatter().format(
        record("sent %s", "2025-04-04", event="sent", date=dt.date(2025, 4, 4), path=Path("/x"))
    )
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning" and data["message"] == "sent 2025-04-04"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", data["time"])
    # Values JSON cannot hold are written as text, not dropped or fatal.
    assert (data["event"], data["date"], data["path"]) == ("sent", "2025-04-04", "/x")
    assert "traceback" not in data
    assert not {"args", "msg", "levelno", "exc_info", "taskName"} & set(data)


def test_json_keeps_hangul_as_text():
    line = JsonFormatter().format(record("김철수 <kim@한국.kr> 구독", file="논문.txt"))
    assert "김철수 <kim@한국.kr> 구독" in line and "논문.txt" in line
    assert json.loads(line)["file"] == "논문.txt"


def test_json_traceback_field_holds_the_whole_traceback():
    try:
        raise ValueError("bad digest 한국어")
    except ValueError:
        exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(record("failed", exc_info=exc_info)))
    assert data["message"] == "failed"
    assert data["traceback"].startswith("Traceback (most recent call last):")
    assert data["traceback"].rstrip().endswith("ValueError: bad digest 한국어")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_setup_logging_writes_one_line_per_event_to_stderr(fmt):
    code = (
        "import logging, sys\n"
        "from newsletter.logs import setup_logging\n"
        f"setup_logging({fmt!r})\n"
        f"setup_logging({fmt!r})  # twice: still one handler\n"
        "log = logging.getLogger('newsletter')\n"
        "log.debug('hidden')\n"
        "log.info('published %s', '2025-04-04', extra={'event': 'published'})\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    log.exception('boom')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8"
    )
    assert done.returncode == 0 and done.stdout == ""
    if fmt == "json":
        lines = done.stderr.splitlines()
        events = [json.loads(line) for line in lines]
        assert len(events) == 2
        assert events[0]["message"] == "published 2025-04-04"
        assert events[0]["event"] == "published"
        assert "ZeroDivisionError" in events[1]["traceback"]
    else:
        first, *rest = done.stderr.splitlines()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO published 2025-04-04", first)
        assert rest[0].endswith("ERROR boom") and "ZeroDivisionError" in rest[-1]
        assert "hidden" not in done.stderr


def test_setup_logging_replaces_handlers_and_stops_propagation():
    logger = logging.getLogger("newsletter")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        setup_logging("json", logging.WARNING)
        setup_logging("json", logging.WARNING)
        assert len(logger.handlers) == 1
        assert isinstance(logger.handlers[0].formatter, JsonFormatter)
        assert logger.level == logging.WARNING and logger.propagate is False
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
