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
