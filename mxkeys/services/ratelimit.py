"""Request rate limits: a token bucket per key (a user, an IP address).

On PostgreSQL the buckets live in the database (`storage/rate_limits.py`, one atomic statement
per request), so the workers of `mxkeys serve --workers N` share each limit: N workers allow
what one does. On SQLite, where one process owns the database, they live in memory.

A limit with a rate of 0 is off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mxkeys.config import Config
from mxkeys.errors import limit_exceeded
from mxkeys.storage.rate_limits import RateLimitStore

# Forget idle buckets once there are this many (a full bucket needs no memory).
_PRUNE_AT = 10_000


class RateLimiter:
    """`rate_per_s` requests per second sustained, bursts of up to `burst`.

    `await check(key)` takes one token or raises 429 M_LIMIT_EXCEEDED with `retry_after_ms`.
    With a `store`, buckets are rows shared by every process (named `name:key`); `clock` then
    must be wall-clock time, the same in every process.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] | None = None,
        store: RateLimitStore | None = None,
        name: str = "",
    ) -> None:
        self.enabled = rate_per_s > 0
        self.rate = max(rate_per_s, 1e-9)
        self.burst = float(max(burst, 1))
        self.store = store
        self.name = name
        self.clock = clock or (time.time if store is not None else time.monotonic)
        # key -> (tokens, time of that count)
        self._buckets: dict[str, tuple[float, float]] = {}

    def _refused(self, tokens: float, cost: float) -> None:
        retry_after_ms = int((cost - tokens) / self.rate * 1000) + 1
        raise limit_exceeded(retry_after_ms)

    async def check(self, key: str, cost: float = 1.0) -> None:
        if not self.enabled:
            return
        if self.store is not None:
            allowed, tokens = await self.store.take(
                f"{self.name}:{key}",
                cost,
                self.rate / 1000,
                self.burst,
                int(self.clock() * 1000),
            )
            if not allowed:
                self._refused(tokens, cost)
            return
        self.check_local(key, cost)

    def check_local(self, key: str, cost: float = 1.0) -> None:
        """The in-memory bucket (no database)."""
        if not self.enabled:
            return
        now = self.clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(now - then, 0.0) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            self._refused(tokens, cost)
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


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Every limit the server enforces, built from the settings."""

    register: RateLimiter  # per client IP address
    login: RateLimiter  # per client IP address ("ip:...") and per user ("user:...")
    keys_claim: RateLimiter  # per user
    send_to_device: RateLimiter  # per user
    room_keys_upload: RateLimiter  # per user

    @classmethod
    def from_config(cls, config: Config, store: RateLimitStore | None) -> RateLimits:
        def limiter(name: str, per_minute: int, burst: int) -> RateLimiter:
            return RateLimiter(per_minute / 60, burst, store=store, name=name)

        return cls(
            register=limiter("register", config.register_per_minute, config.register_burst),
            login=limiter("login", config.login_per_minute, config.login_burst),
            keys_claim=limiter(
                "keys_claim", config.keys_claim_per_minute, config.keys_claim_burst
            ),
            send_to_device=limiter(
                "send_to_device", config.send_to_device_per_minute, config.send_to_device_burst
            ),
            room_keys_upload=limiter(
                "room_keys_upload",
                config.room_keys_upload_per_minute,
                config.room_keys_upload_burst,
            ),
        )
