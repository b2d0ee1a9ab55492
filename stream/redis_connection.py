"""One Redis client for the stream's stores, and the pipeline that requests' small commands share.

The session store, the recommendations shown and the model registry of one process use one
connection pool; `Coalescer` sends the point reads and writes that concurrent requests make
at about the same time as one pipeline.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class RedisConnection:
    """Started once for all the stores over it (stream.stores); `client` and `small` are
    there from `start()` on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._small: Coalescer | None = None

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.from_url(self.url)
        await self._client.ping()
        self._small = Coalescer(self._client)

    async def ready(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> Any:
        assert self._client is not None, "start() first"
        return self._client

    @property
    def small(self) -> Coalescer:
        """A request's point reads and writes: one pipeline with other requests'."""
        assert self._small is not None, "start() first"
        return self._small


class Coalescer:
    """Small commands that requests issue at about the same time, sent to Redis as one pipeline.

    A GetRecommendations makes two small round trips (its user's state, then its answer's
    items for implicit impressions), and redis-py spends more CPU on each (~50 us: pool,
    retry, pipeline objects, one more event-loop wake) than Redis does. Under load many
    requests are at one of those steps at once, so one pipeline carries all of theirs. A
    caller still awaits its own replies: what it wrote is in Redis before it answers. One
    pipeline is in flight at a time; commands queued meanwhile go in the next, so a queue
    costs at most one extra round trip of waiting."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queued: list[tuple[Callable[[Any], object], int, asyncio.Future[list[Any]]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def call(self, queue: Callable[[Any], object], n: int) -> list[Any]:
        """`queue(pipe)` adds `n` commands to a pipeline; their replies, in order."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queued.append((queue, n, future))
        if self._drain is None:
            self._drain = asyncio.ensure_future(self._send())  # runs after this turn's callers queued
        return await future

    async def _send(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for queue, _, _ in batch:
                            queue(pipe)
                        replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:  # noqa: BLE001 - each caller gets it, as from its own call
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                at = 0
                for _, n, future in batch:
                    mine, at = replies[at:at + n], at + n
                    if future.done():  # its caller was cancelled
                        continue
                    error = next((r for r in mine if isinstance(r, Exception)), None)
                    if error is None:
                        future.set_result(mine)
                    else:
                        future.set_exception(error)
        finally:
            self._drain = None
