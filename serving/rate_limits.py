"""Request rates per resource (a campaign, an event tracker), so one caller cannot take a
server's whole capacity: Personalize's documented quotas, answered with ThrottlingException.

A token bucket per key: `per_second` tokens a second, at most `burst` saved up, one taken by
each request. Each bucket is kept as one number, the time at which it would be full again
shifted by one token (GCRA's "theoretical arrival time", the same bucket counted from the
other end), so a check is a dict lookup and a few float operations: it runs on every
GetRecommendations and PutEvents, thousands a second.

Buckets live in the process: with `personalize serve --workers N` each API process allows the
whole rate, so the server as a whole allows up to N times it.
"""
from __future__ import annotations

import time
from collections.abc import Callable


class RateLimit:
    """`wait(key)` is 0.0 for a request within the rate (and counts it), else the seconds until
    one would be (and counts nothing). `clock` is in seconds, monotonic (tests pass their own)."""

    __slots__ = ("per_second", "_interval", "_slack", "_clock", "_full_at", "max_keys")

    def __init__(self, per_second: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        burst = per_second if burst is None else burst
        if per_second <= 0 or burst < 1:
            raise ValueError(f"a rate needs per_second > 0 and burst >= 1, not {per_second}, {burst}")
        self.per_second = per_second
        self._interval = 1.0 / per_second
        self._slack = (burst - 1) * self._interval  # how far ahead of now the bucket may run
        self._clock = clock
        self._full_at: dict[str, float] = {}
        self.max_keys = max_keys

    def wait(self, key: str) -> float:
        now = self._clock()
        at = self._full_at.get(key)
        if at is None:
            if len(self._full_at) >= self.max_keys:
                self._forget_full(now)
            at = now
        elif at < now:
            at = now
        ahead = at - now - self._slack
        if ahead > 1e-9:  # not float dust from adding up intervals
            return ahead
        self._full_at[key] = at + self._interval
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Buckets that have refilled are the same as no bucket: drop them (all of them if every
        key is busy), so keys of deleted resources cannot pile up."""
        self._full_at = {k: v for k, v in self._full_at.items() if v > now}
        if len(self._full_at) >= self.max_keys:
            self._full_at.clear()


class NoLimit:
    """A rate of 0 in the settings: every request goes."""

    per_second = 0.0

    def wait(self, key: str) -> float:
        return 0.0


NO_LIMIT = NoLimit()


def rate_limit(per_second: float) -> RateLimit | NoLimit:
    """The limit for a setting: `per_second` requests a second (bursts of one second's worth),
    or none when it is 0."""
    return RateLimit(per_second) if per_second > 0 else NoLimit()
