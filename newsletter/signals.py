"""SIGTERM as Ctrl-C: systemd stop, `docker stop` and `timeout` run the same clean-up.

`sigterm_is_ctrl_c()` makes SIGTERM raise `Terminated`, a KeyboardInterrupt,
in the main thread, where Ctrl-C raises KeyboardInterrupt: whatever handles
Ctrl-C (a delivery recording the messages in flight, the preview removing its
folder) handles SIGTERM too, and a caller can still tell the two apart.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """Raised on SIGTERM inside `sigterm_is_ctrl_c`."""


@contextlib.contextmanager
def sigterm_is_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (only in the main thread,
    where Python runs signal handlers; elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum: int, _frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM are noted, not acted on; at its end
    the first one noted is handled as it would have been (its handler called,
    or its default action taken). For work that must not stop halfway: the
    delivery run's handling of a batch of results taken from its workers (a
    result dropped there is an accepted message the ledger never records,
    sent again by a rerun). Only in the main thread, where Python runs signal
    handlers; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: Any) -> None:
        noted.append(signum)

    held = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, note) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            _act(noted[0], previous[noted[0]])


def _act(signum: int, handler: Any) -> None:
    """Do what `handler` (signal.signal's previous value) does for `signum`."""

    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)  # the default action: this process ends
    # SIG_IGN, or a handler not set from Python (None): nothing to do
