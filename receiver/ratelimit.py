"""Per-target token bucket: ``messages`` per ``per_seconds``, bursting up to ``messages``."""

from __future__ import annotations

import time
from collections.abc import Callable

from receiver.channels.base import RateLimit


class TokenBucket:
    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.capacity = float(limit.messages)
        self.rate = limit.messages / limit.per_seconds  # tokens per second
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def available(self) -> float:
        """Tokens available now (fractional)."""
        self._refill()
        return self._tokens

    def take(self) -> None:
        self._refill()
        self._tokens -= 1.0

    def wait_time(self) -> float:
        """Seconds until one whole token is available (0 if one is available now)."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate

    def drain(self) -> None:
        """Throttled by the service although our bucket had room: start again from empty."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)
