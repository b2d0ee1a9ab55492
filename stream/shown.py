"""The recommendations shown: which items a recommendation id answered with, for a while.

GetRecommendations remembers its answer under the recommendationId it returns; a later
PutEvents that names that id without an impression list gets these items as its
impressions (implicit impressions). Embedded: kept in the process's memory, bounded;
distributed: one Redis string per id with its TTL.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import orjson

from stream.redis_connection import RedisConnection
from stream.store import glob, unlink_matching

MAX_SHOWN_IN_MEMORY = 1_000_000  # embedded: recommendation lists kept at most (~300 B each)


class ShownLists(Protocol):
    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        """The items a recommendation showed, for `ttl_s`."""

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        """What `remember` kept for each id of the dataset group; None where unknown or expired."""

    async def erase_group(self, dataset_group: str) -> None:
        """Forget every recommendation the dataset group showed."""


class MemoryShownLists:
    """Oldest first, so that the first entry is also the first to expire (one TTL for all).
    The items are kept as JSON bytes, not lists, so that the cyclic GC need not walk every
    entry (measured: docs/benchmarks.md, serving)."""

    def __init__(self) -> None:
        self._shown: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()

    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        now = time.monotonic()
        shown = self._shown
        shown[(dataset_group, recommendation_id)] = (now + ttl_s, orjson.dumps(list(items)))
        while shown and (len(shown) > MAX_SHOWN_IN_MEMORY or next(iter(shown.values()))[0] < now):
            shown.popitem(last=False)

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        now = time.monotonic()
        hits = [self._shown.get((dataset_group, r)) for r in recommendation_ids]
        return [None if h is None or h[0] < now else orjson.loads(h[1]) for h in hits]

    async def erase_group(self, dataset_group: str) -> None:
        # list() copies the keys in one C call: the event loop's thread may add some meanwhile
        for key in [k for k in list(self._shown) if k[0] == dataset_group]:
            self._shown.pop(key, None)


class RedisShownLists:
    def __init__(self, redis: RedisConnection, *, prefix: str = "opz") -> None:
        self.redis = redis
        self.prefix = prefix

    def key(self, dataset_group: str, recommendation_id: str) -> str:
        return f"{self.prefix}:shown:{dataset_group}:{recommendation_id}"

    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        key, body = self.key(dataset_group, recommendation_id), orjson.dumps(list(items))
        await self.redis.small.call(lambda pipe: pipe.set(key, body, px=max(1, int(ttl_s * 1000))), 1)

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        if not recommendation_ids:
            return []
        raw = await self.redis.client.mget([self.key(dataset_group, r) for r in recommendation_ids])
        return [None if r is None else orjson.loads(r) for r in raw]

    async def erase_group(self, dataset_group: str) -> None:
        await unlink_matching(self.redis.client, [glob(self.key(dataset_group, "")) + "*"])
