"""The stream's stores, one port per concern, over one backend.

`sessions` (states, log positions and counter increments, written in one transaction),
`counters` (their reads), `shown` (recommendations shown, for implicit impressions) and
`models` (the model registry). Embedded, the backend is sessions.db and the process's
memory; distributed, one Redis connection. Erasing a dataset group asks every port.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kernel.settings import Settings
from stream.model_registry import MemoryModelRegistry, ModelRegistry, RedisModelRegistry
from stream.redis_connection import RedisConnection
from stream.shown import MemoryShownLists, RedisShownLists, ShownLists
from stream.store import Counters, RedisSessionStore, SessionStore, SqliteSessionStore


class Backend(Protocol):
    async def start(self) -> None:
        """Connect; fails loudly if the backend is unreachable."""

    async def ready(self) -> None:
        """Raise unless the backend answers now (readiness checks)."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class Stores:
    backend: Backend
    sessions: SessionStore
    counters: Counters
    shown: ShownLists
    models: ModelRegistry

    async def start(self) -> None:
        await self.backend.start()

    async def ready(self) -> None:
        await self.backend.ready()

    async def close(self) -> None:
        await self.backend.close()

    async def erase_group(self, dataset_group: str) -> None:
        """All the stores keep of a dataset group: states, positions of its topics, counters,
        the recommendations it showed and the model it published."""
        await self.sessions.erase_group(dataset_group)
        await self.shown.erase_group(dataset_group)
        await self.models.erase_group(dataset_group)


@dataclass(frozen=True)
class _InMemory:
    shown: MemoryShownLists
    models: MemoryModelRegistry


# Embedded, every Stores of one sessions.db in the process shares what is kept in memory, so
# that the stores the control plane opens to erase a dataset group reach the serving ones'.
_IN_MEMORY: dict[Path, _InMemory] = {}


def sqlite_stores(path: Path) -> Stores:
    kept = _IN_MEMORY.setdefault(path.resolve(), _InMemory(MemoryShownLists(), MemoryModelRegistry()))
    sessions = SqliteSessionStore(path)
    return Stores(sessions, sessions, sessions, kept.shown, kept.models)


def redis_stores(url: str, prefix: str = "opz") -> Stores:
    redis = RedisConnection(url)
    sessions = RedisSessionStore(redis, prefix=prefix)
    return Stores(redis, sessions, sessions, RedisShownLists(redis, prefix=prefix),
                  RedisModelRegistry(redis, prefix=prefix))


def open_stores(settings: Settings) -> Stores:
    if settings.redis_url:
        return redis_stores(settings.redis_url, settings.redis_prefix)
    return sqlite_stores(settings.data_dir / "sessions.db")
