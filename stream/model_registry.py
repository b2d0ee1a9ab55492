"""Which HRNN version each dataset group serves, as the API published it.

The API publishes a campaign's version when it first answers with it; the stream workers
(stream/live_state.py) read the registry and keep users' states live under that version.
A version created before the one already published never replaces it, so a late publisher
cannot roll a group back. Embedded: the process's memory; distributed: one Redis hash.
"""
from __future__ import annotations

from typing import Protocol

import orjson

from stream.redis_connection import RedisConnection


class ModelRegistry(Protocol):
    async def publish(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        """Say which version (`model`, its `artifact` location, when it was `created`) the
        dataset group serves, unless a later-created one is published already."""

    async def published(self) -> dict[str, dict[str, object]]:
        """dataset group -> {"model", "artifact", "created"} as published."""

    async def erase_group(self, dataset_group: str) -> None:
        """Forget what the dataset group published."""


class MemoryModelRegistry:
    def __init__(self) -> None:
        self._live: dict[str, dict[str, object]] = {}

    async def publish(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        current = self._live.get(dataset_group)
        if current is None or float(current["created"]) <= created:  # type: ignore[arg-type]
            self._live[dataset_group] = {"model": model, "artifact": artifact, "created": created}

    async def published(self) -> dict[str, dict[str, object]]:
        return dict(self._live)

    async def erase_group(self, dataset_group: str) -> None:
        self._live.pop(dataset_group, None)


# HSET field ARGV[1] = ARGV[2] unless the stored body's "created" is later than ARGV[3]
_PUBLISH_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cjson.decode(cur)['created']) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisModelRegistry:
    def __init__(self, redis: RedisConnection, *, prefix: str = "opz") -> None:
        self.redis = redis
        self.key = f"{prefix}:live-models"

    async def publish(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        body = orjson.dumps({"model": model, "artifact": artifact, "created": created})
        await self.redis.client.eval(_PUBLISH_IF_NEWER, 1, self.key, dataset_group, body, created)

    async def published(self) -> dict[str, dict[str, object]]:
        return {k.decode(): orjson.loads(v) for k, v in (await self.redis.client.hgetall(self.key)).items()}

    async def erase_group(self, dataset_group: str) -> None:
        await self.redis.client.hdel(self.key, dataset_group)
