"""The session-state seam: where per-user SessionState lives between events.

Embedded: SQLite under the data dir (state survives a restart with the log's offsets).
Distributed: Redis, one hash per user (layout in stream/contract.py). Both pass the one
suite in tests/integration/test_session_store.py.
"""
from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from stream.contract import SESSION_LAYOUT_VERSION, UnknownVersion
from stream.session import SessionState
from stream.settings import Settings

Key = tuple[str, str]  # (dataset group name, user key)


class SessionStore(Protocol):
    async def start(self) -> None:
        """Connect; fails loudly if the backend is unreachable."""

    async def close(self) -> None:
        """Release connections."""

    async def get_many(self, keys: Sequence[Key]) -> list[SessionState | None]:
        """States for `keys` in one round trip; None where a user has none."""

    async def put_many(self, states: Mapping[Key, SessionState]) -> None:
        """Write all states in one round trip (pipelined / one transaction)."""


def open_session_store(settings: Settings) -> SessionStore:
    if settings.redis_url:
        return RedisSessionStore(settings.redis_url, prefix=settings.redis_prefix)
    return SqliteSessionStore(settings.data_dir / "sessions.db")


def _encode(state: SessionState) -> bytes:
    return state.model_dump_json(exclude_defaults=True).encode()


class SqliteSessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-store")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS sessions (dsg TEXT, user TEXT, v INTEGER,"
                   " state BLOB, PRIMARY KEY (dsg, user))")
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def get_many(self, keys: Sequence[Key]) -> list[SessionState | None]:
        return await self._run(self._get_many, list(keys))

    def _get_many(self, keys: list[Key]) -> list[SessionState | None]:
        assert self._db is not None
        out: list[SessionState | None] = []
        for dsg, user in keys:
            row = self._db.execute("SELECT v, state FROM sessions WHERE dsg = ? AND user = ?",
                                   (dsg, user)).fetchone()
            out.append(None if row is None else _decode(row[0], row[1]))
        return out

    async def put_many(self, states: Mapping[Key, SessionState]) -> None:
        rows = [(dsg, user, SESSION_LAYOUT_VERSION, _encode(s)) for (dsg, user), s in states.items()]
        await self._run(self._put_many, rows)

    def _put_many(self, rows: list[tuple[str, str, int, bytes]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)", rows)


def _decode(version: object, raw: bytes | str) -> SessionState:
    if str(version) != str(SESSION_LAYOUT_VERSION):
        raise UnknownVersion(f"session layout version {version!r}, expected {SESSION_LAYOUT_VERSION}")
    return SessionState.model_validate_json(raw)


class RedisSessionStore:
    def __init__(self, url: str, *, prefix: str = "opz") -> None:
        self.url = url
        self.prefix = prefix
        self._redis = None

    def key(self, dsg: str, user: str) -> str:
        return f"{self.prefix}:session:{dsg}:{user}"

    async def start(self) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(self.url)
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def get_many(self, keys: Sequence[Key]) -> list[SessionState | None]:
        assert self._redis is not None, "start() first"
        async with self._redis.pipeline(transaction=False) as pipe:
            for dsg, user in keys:
                pipe.hmget(self.key(dsg, user), "v", "state")
            rows = await pipe.execute()
        return [None if state is None else _decode(v.decode(), state) for v, state in rows]

    async def put_many(self, states: Mapping[Key, SessionState]) -> None:
        assert self._redis is not None, "start() first"
        async with self._redis.pipeline(transaction=False) as pipe:
            for (dsg, user), state in states.items():
                pipe.hset(self.key(dsg, user),
                          mapping={"v": SESSION_LAYOUT_VERSION, "state": _encode(state)})
            await pipe.execute()
