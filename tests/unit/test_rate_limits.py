"""Request rates per campaign and per tracker: a burst of one second's worth, then the rate,
each key on its own; on a clock the test moves, so nothing sleeps."""
from __future__ import annotations

import pytest

from serving.rate_limits import NoLimit, RateLimit, rate_limit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_one_seconds_worth_then_the_rate() -> None:
    clock = Clock()
    limit = RateLimit(5, clock=clock)
    assert [limit.wait("c") for _ in range(5)] == [0.0] * 5
    assert limit.wait("c") == pytest.approx(0.2)  # the next token in 1/5 s
    clock.now += 0.1
    assert limit.wait("c") == pytest.approx(0.1)
    clock.now += 0.1
    assert limit.wait("c") == 0.0
    assert limit.wait("c") == pytest.approx(0.2)
    clock.now += 10  # idle: the bucket refills to its burst, no further
    assert [limit.wait("c") for _ in range(6)] == [0.0] * 5 + [pytest.approx(0.2)]


def test_a_refused_request_takes_no_token() -> None:
    clock = Clock()
    limit = RateLimit(2, clock=clock)
    limit.wait("c"), limit.wait("c")
    for _ in range(100):  # a client hammering while throttled does not push its wait out
        assert limit.wait("c") == pytest.approx(0.5)
    clock.now += 0.5
    assert limit.wait("c") == 0.0


def test_steady_traffic_at_the_rate_is_never_throttled_and_above_it_is_cut_to_it() -> None:
    clock = Clock()
    limit = RateLimit(100, clock=clock)
    assert all(limit.wait("c") == 0.0 for _ in range(100))  # the burst
    steady = 0
    for _ in range(1000):  # then 1,000 requests a second for 10 s
        clock.now += 0.001
        steady += limit.wait("c") == 0.0
    assert steady == pytest.approx(1000 // 10, abs=1)  # 100 a second get through
    clock.now += 1
    fresh = RateLimit(100, clock=clock)
    for _ in range(1000):  # exactly the rate: every one goes
        clock.now += 0.01
        assert fresh.wait("c") == 0.0


def test_keys_are_independent_and_a_burst_can_be_set() -> None:
    clock = Clock()
    limit = RateLimit(1, burst=3, clock=clock)
    assert [limit.wait("a") for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(1.0)]
    assert limit.wait("b") == 0.0
    clock.now += 1
    assert limit.wait("a") == 0.0 and limit.wait("a") == pytest.approx(1.0)


def test_full_buckets_are_forgotten_when_too_many_keys_pile_up() -> None:
    clock = Clock()
    limit = RateLimit(10, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limit.wait(key)
    clock.now += 0.05  # a, b, c still hold a token's debt
    limit.wait("a")
    limit.wait("d")  # 3 busy keys: room is made by forgetting them all
    assert len(limit._full_at) == 1
    clock.now += 5  # all refilled: a new key drops only those
    limit.wait("d"), limit.wait("e")
    limit.wait("f"), limit.wait("g")
    assert set(limit._full_at) <= {"d", "e", "f", "g"} and len(limit._full_at) <= 3


def test_a_rate_of_zero_is_no_limit_and_a_bad_rate_is_refused() -> None:
    assert isinstance(rate_limit(0), NoLimit)
    assert all(rate_limit(0).wait("c") == 0.0 for _ in range(10_000))
    assert isinstance(rate_limit(500), RateLimit) and rate_limit(500).per_second == 500
    with pytest.raises(ValueError):
        RateLimit(-1)
    with pytest.raises(ValueError):
        RateLimit(10, burst=0.5)
