"""The token bucket behind per-user rate limits."""

from __future__ import annotations

import pytest

from mxkeys.errors import MatrixError
from mxkeys.services.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.check_local("@a:hs")
    with pytest.raises(MatrixError) as e:
        limiter.check_local("@a:hs")
    assert e.value.status == 429 and e.value.errcode == "M_LIMIT_EXCEEDED"
    assert e.value.extra["retry_after_ms"] == 501
    assert e.value.headers["Retry-After"] == "1"
    limiter.check_local("@b:hs")  # buckets are per key
    clock.now += 0.5
    limiter.check_local("@a:hs")
    with pytest.raises(MatrixError):
        limiter.check_local("@a:hs")
    clock.now += 60  # refills up to the burst only
    for _ in range(3):
        limiter.check_local("@a:hs")
    with pytest.raises(MatrixError):
        limiter.check_local("@a:hs")


def test_idle_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, clock=clock)
    for i in range(10_001):
        limiter.check_local(f"@u{i}:hs")
    clock.now += 5
    limiter.check_local("@last:hs")
    assert len(limiter._buckets) == 1
