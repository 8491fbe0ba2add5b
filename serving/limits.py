"""A token-bucket rate limiter (thread-safe, in memory, per process), keyed by API key id or,
for failed authentications, by client address (serving/request_guard.py).

Each key has a bucket of `burst` tokens refilled at `rate` tokens a second; a request takes
one token or is refused. With several service workers each holds its own buckets, so the
effective limit is `rate` x workers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1 (got rate={rate}, burst={burst})")
        self.rate = float(rate)
        self.burst = int(burst)
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str, cost: float = 1.0) -> bool:
        """Take `cost` tokens from the key's bucket; False when there are not enough."""
        with self._lock:
            bucket = self._refilled(key_id)
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return True
            return False

    def ready(self, key_id: str, cost: float = 1.0) -> bool:
        """True when `cost` tokens are there, without taking them."""
        with self._lock:
            return self._refilled(key_id).tokens >= cost

    def retry_after(self, key_id: str, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available (0 when they are now)."""
        with self._lock:
            bucket = self._refilled(key_id)
            return max(0.0, (cost - bucket.tokens) / self.rate)

    def _refilled(self, key_id: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            self._forget_full_buckets(now)
            bucket = self._buckets[key_id] = _Bucket(float(self.burst), now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        return bucket

    def _forget_full_buckets(self, now: float) -> None:
        """Bound memory: a bucket that has refilled is the same as no bucket."""
        if len(self._buckets) < self._max_keys:
            return
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
