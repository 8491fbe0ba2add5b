from __future__ import annotations

import threading

import pytest

from serving.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_per_key():
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")  # other keys have their own bucket
    assert limiter.retry_after("a") == pytest.approx(0.5)
    clock.now = 0.5
    assert limiter.allow("a")
    assert not limiter.allow("a")
    clock.now = 100.0
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_threads_never_exceed_the_burst():
    limiter = RateLimiter(rate=1e-9, burst=50)  # effectively no refill during the test
    granted = []
    lock = threading.Lock()

    def worker() -> None:
        got = sum(limiter.allow("k") for _ in range(100))
        with lock:
            granted.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 50


def test_idle_buckets_are_forgotten_when_full():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_keys=3)
    for key in "abc":
        limiter.allow(key)
    clock.now = 10.0
    assert limiter.allow("d")
    assert len(limiter._buckets) == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateLimiter(rate=0, burst=1)
