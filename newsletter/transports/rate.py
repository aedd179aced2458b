"""The rate limit shared by the connections of one sending run (email.smtp.rate_limit)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A token bucket: at most `rate` messages/s among the connections sharing it.

    Threads of one pool share one; each worker process has its own, with its
    share of `email.smtp.rate_limit` (deliver/workers.py). `rate` <= 0 means no
    limit. `burst` is the bucket's size (default: a tenth of a second's worth, at
    least one message). `clock` (seconds, monotonic) and `sleep` are injectable
    so the arithmetic can be tested without waiting.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = burst or max(1.0, rate / 10)
        self.tokens = self.capacity
        self.clock = clock
        self.sleep = sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self) -> None:
        """Wait until one message may go out (returns at once without a limit)."""
        if self.rate <= 0:
            return
        while True:
            with self.lock:
                now = self.clock()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            self.sleep(wait)
