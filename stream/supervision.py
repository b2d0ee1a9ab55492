"""Consumers that never die silently: restarted with backoff, and their failures on /health.

A record a consumer cannot handle becomes a dead letter (stream.dead_letters); what is left
is a consumer task that fails for another reason (a bug outside any one record, a store
that keeps failing). Before, such a task ended inside an `asyncio.gather` and events went on
being accepted but never applied or archived. `supervised` logs it at ERROR, restarts it
with exponential backoff, and `ConsumerHealth` tells /health.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
# a store or log that is down, not a bad record: hold the position and retry
TRANSIENT: tuple[type[BaseException], ...] = (OSError, sqlite3.OperationalError)
RECENT_S = 60.0  # a consumer that failed this recently makes /health say "degraded"
CONTACT_WITHIN_S = 60.0  # a worker or trainer whose service has not answered for this long is unhealthy
Health = tuple[bool, dict[str, Any]]  # healthy?, and what /health says


@dataclass
class Failure:
    restarts: int
    error: str
    at: float


class ConsumerHealth:
    def __init__(self, recent_s: float = RECENT_S,
                 on_failure: Callable[[str], None] = lambda consumer: None) -> None:
        self.recent_s, self.on_failure = recent_s, on_failure
        self.failures: dict[str, Failure] = {}

    def failed(self, consumer: str, exc: BaseException, at: float | None = None) -> None:
        self.on_failure(consumer)
        before = self.failures.get(consumer)
        self.failures[consumer] = Failure((before.restarts if before else 0) + 1,
                                          f"{type(exc).__name__}: {exc}"[:500], at or time.time())

    def report(self, now: float | None = None) -> dict[str, Any]:
        """`status` is "degraded" while a consumer failed in the last `recent_s` seconds."""
        now = now or time.time()
        recent = any(now - f.at < self.recent_s for f in self.failures.values())
        consumers = {name: {"restarts": f.restarts, "lastError": f.error,
                            "lastFailure": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.at))}
                     for name, f in sorted(self.failures.items())}
        return {"status": "degraded" if recent else "ok", **({"consumers": consumers} if consumers else {})}


async def supervised(name: str, run: Callable[[], Awaitable[None]], stop: asyncio.Event,
                     health: ConsumerHealth, first_delay_s: float = 0.5, max_delay_s: float = 30.0) -> None:
    """Run `run()` until it returns or `stop` is set; restart it after any failure."""
    delay = first_delay_s
    while not stop.is_set():
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it was, the consumer must go on
            health.failed(name, exc)
            log.exception("consumer %s failed; restarting it in %.1f s", name, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay_s)


async def retrying(write: Callable[..., Awaitable[T]], *args: Any, transient: tuple[type[BaseException], ...]
                   = TRANSIENT, stop: asyncio.Event | None = None, **kwargs: Any) -> T:
    """Hold the position while a store is down (Redis restarting, SQLite locked): order
    matters more than progress, and a consumer that moved on would skip the batch it held."""
    delay = 0.1
    while True:
        try:
            return await write(*args, **kwargs)
        except transient as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning("store unavailable (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


class Contact:
    """When the service a process cannot work without (a worker's Kafka, a trainer's control
    store) last answered it: what the /health of its metrics port says, so a health check asks
    the process rather than guessing from outside. Unhealthy until the first answer."""

    def __init__(self, service: str, within_s: float = CONTACT_WITHIN_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.service, self.within_s, self.clock = service, within_s, clock
        self.at: float | None = None

    def answered(self) -> None:
        self.at = self.clock()

    def health(self) -> Health:
        if self.at is None:
            return False, {"status": "starting", self.service: "has not answered yet"}
        ago = self.clock() - self.at
        healthy = ago <= self.within_s
        said = {"status": "ok" if healthy else "unhealthy", self.service: f"answered {ago:.1f} s ago"}
        return healthy, said
