"""Request rate limits: a token bucket per key (e.g. per user).

The buckets live in this process. With several workers each one enforces the limit on its
own share of the traffic, so a user could get up to N times the rate; sharing the buckets
(e.g. in PostgreSQL or Redis) comes with the scale-out work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mxkeys.errors import limit_exceeded

# Forget idle buckets once there are this many (a full bucket needs no memory).
_PRUNE_AT = 10_000


class RateLimiter:
    """`rate_per_s` requests per second sustained, bursts of up to `burst`.

    `check(key)` takes one token or raises 429 M_LIMIT_EXCEEDED with `retry_after_ms`.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = max(rate_per_s, 1e-9)
        self.burst = float(max(burst, 1))
        self.clock = clock
        # key -> (tokens, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key: str, cost: float = 1.0) -> None:
        now = self.clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            retry_after_ms = int((cost - tokens) / self.rate * 1000) + 1
            raise limit_exceeded(retry_after_ms)
        self._buckets[key] = (tokens - cost, now)
        if len(self._buckets) > _PRUNE_AT:
            self._prune(now)

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
