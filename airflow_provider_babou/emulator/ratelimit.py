"""Per-API-key token bucket rate limiting (the documented unit of rate limiting is the key)."""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """``rate`` tokens per second per key, at most ``burst`` saved up; ``rate == 0`` disables it."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> int | None:
        """Spend one token for ``key``.

        :returns: None when allowed, else the whole seconds until a token is available
            (the ``Retry-After`` value, at least 1).
        """
        if self.rate <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
