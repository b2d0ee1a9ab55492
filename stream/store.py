"""The session-state seam: where per-user SessionState lives between events, with the log
positions it was applied up to and the per-item counters the same events moved.

Embedded: SQLite under the data dir (state survives a restart with the log's offsets).
Distributed: Redis, one hash per user (every key family: docs/architecture.md). Both pass
the one suite in tests/integration/test_session_store.py. The other stores of the stream
(recommendations shown, the model registry) are their own ports: stream.stores.
"""
from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from kernel.contract import RECORD_TYPES, SESSION_LAYOUT_VERSION, UnknownVersion, events_topic, records_topic
from kernel.scrub import chunks, scrubbed
from kernel.trending import oldest_kept_bucket
from stream.counters import BUCKET, Increments, expires_at
from stream.redis_connection import RedisConnection
from stream.session import SessionState

Key = tuple[str, str]  # (dataset group name, user key)
# a load this small (a request's: a user and its session) reads SQLite on the event loop
# (embedded) or shares a pipeline with other requests' (Redis)
POINT_READ_KEYS = 2


class PositionMoved(Exception):
    """A save expected a position that another writer has moved since (a partition that
    changed owners mid-batch): nothing was written; reload and skip what it applied."""


class SessionStore(Protocol):
    """Per-user states, plus the log positions and counter increments saved atomically with them.

    A position ("topic:partition" -> last applied offset) written in the same transaction
    as the states it produced lets a consumer skip what it already applied and notice
    when the store lost data (the position is gone) and must be rebuilt. Counters
    (stream/counters.py) ride in the same transaction, so they count each event once too.
    """

    async def load(self, keys: Sequence[Key], positions: Sequence[str] = ()
                   ) -> tuple[list[SessionState | None], list[int | None]]:
        """States for `keys` and the named positions, in one round trip; None where absent."""

    async def save(self, states: Mapping[Key, SessionState],
                   positions: Mapping[str, int] | None = None,
                   counts: Increments | None = None, *,
                   expect: Mapping[str, int | None] | None = None) -> None:
        """Write states, positions and counter increments atomically (MULTI / one transaction),
        only if the positions named in `expect` still hold those values (None: absent); else
        raise PositionMoved and write nothing. Two writers of one partition (its old owner
        finishing a batch during a rebalance, and its new one) then cannot both apply it."""

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        """Delete these users' (or anonymous sessions') states; returns the keys that had one.
        The group's erasures position (`erasures_name`) goes up before and after, so no worker
        keeps a state from before the erasure in memory past it."""

    async def erase_group(self, dataset_group: str) -> None:
        """Delete all a dataset group has here: its users' states, the positions of its topics
        and its counters."""


class Counters(Protocol):
    """Reads of the per-item counters that SessionStore.save increments (stream/counters.py)."""

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        """The `limit` highest-scoring items of one counter."""

    async def read_whole(self, dataset_group: str, names: Sequence[str]) -> list[dict[str, float]]:
        """Every item of each named counter, in one round trip ({} for one that is absent):
        Trending-Now's buckets of two windows."""


def group_positions(dataset_group: str) -> tuple[str, ...]:
    """The prefixes of the position names of a dataset group's topics ("<topic>:<partition>")."""
    return tuple(f"{t}:" for t in (events_topic(dataset_group),
                                   *(records_topic(dataset_group, t) for t in RECORD_TYPES)))


def erasures_name(dataset_group: str) -> str:
    """The position that counts erasures of the group's users (SessionStore.erase): a worker's
    states kept in memory (stream/partition_states.py) are the store's only while it is unchanged.
    Named within the group's events topic, so DeleteDatasetGroup takes it with the positions."""
    return f"{events_topic(dataset_group)}:erasures"


def _encode(state: SessionState) -> bytes:
    return state.to_json()


class SqliteSessionStore:
    """Also the embedded stores' backend (stream.stores): start() opens the file."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock  # when counters expire (Trending-Now's buckets)
        self._swept = -1  # bucket counters older than this index are deleted
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-store")
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads, on the caller's thread

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self._run(self._open)

    async def ready(self) -> None:
        if self._db is None:
            raise ConnectionError("the session store is not open")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE IF NOT EXISTS sessions (dsg TEXT, user TEXT, v INTEGER,"
                   " state BLOB, PRIMARY KEY (dsg, user))")
        db.execute("CREATE TABLE IF NOT EXISTS positions (name TEXT PRIMARY KEY, pos INTEGER)")
        db.execute("CREATE TABLE IF NOT EXISTS counters (dsg TEXT, name TEXT, item TEXT,"
                   " score REAL, PRIMARY KEY (dsg, name, item))")
        self._db = db
        # WAL: a reader never waits for the writer thread, and sees what it committed
        self._reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA busy_timeout = 1000")

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._pool.shutdown(wait=True)

    async def load(self, keys: Sequence[Key], positions: Sequence[str] = ()
                   ) -> tuple[list[SessionState | None], list[int | None]]:
        if len(keys) + len(positions) <= POINT_READ_KEYS:
            # a request's few keys: two indexed reads cost less than the hop to the store's
            # thread and back to the event loop
            assert self._reader is not None, "start() first"
            return self._load(self._reader, list(keys), list(positions))
        return await self._run(self._load, self._db, list(keys), list(positions))

    @staticmethod
    def _load(db: sqlite3.Connection | None, keys: list[Key], names: list[str]
              ) -> tuple[list[SessionState | None], list[int | None]]:
        assert db is not None, "start() first"
        states: list[SessionState | None] = []
        for dsg, user in keys:
            row = db.execute("SELECT v, state FROM sessions WHERE dsg = ? AND user = ?",
                             (dsg, user)).fetchone()
            states.append(None if row is None else _decode(row[0], row[1]))
        pos = [db.execute("SELECT pos FROM positions WHERE name = ?", (n,)).fetchone() for n in names]
        return states, [None if p is None else p[0] for p in pos]

    async def save(self, states: Mapping[Key, SessionState],
                   positions: Mapping[str, int] | None = None,
                   counts: Increments | None = None, *,
                   expect: Mapping[str, int | None] | None = None) -> None:
        rows = [(dsg, user, SESSION_LAYOUT_VERSION, _encode(s)) for (dsg, user), s in states.items()]
        now = self.clock()
        adds = [(dsg, name, item, x) for (dsg, name), items in (counts or {}).items()
                if (at := expires_at(name)) is None or at > now  # a bucket too old to read is not kept
                for item, x in items.items()]
        await self._run(self._save, rows, list((positions or {}).items()), adds, dict(expect or {}),
                        oldest_kept_bucket(now))

    def _save(self, rows: list[tuple[str, str, int, bytes]], positions: list[tuple[str, int]],
              adds: list[tuple[str, str, str, float]], expect: dict[str, int | None], oldest: int) -> None:
        """`oldest`: the oldest bucket counter to keep. The older ones are deleted once per new
        bucket (a scan of the counters, every BUCKET_S at most), not per save."""
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for name, want in expect.items():
                row = self._db.execute("SELECT pos FROM positions WHERE name = ?", (name,)).fetchone()
                if (None if row is None else row[0]) != want:
                    raise PositionMoved(f"{name} is at {row}, not {want}")  # rolls back
            self._db.executemany("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)", positions)
            self._db.executemany("INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT"
                                 " DO UPDATE SET score = score + excluded.score", adds)
            if oldest > self._swept:
                self._db.execute("DELETE FROM counters WHERE substr(name, 1, ?) = ?"
                                 " AND CAST(substr(name, ?) AS INTEGER) < ?",
                                 (len(BUCKET), BUCKET, len(BUCKET) + 1, oldest))
        self._swept = max(self._swept, oldest)

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        return await self._run(self._counter, dataset_group, name, limit)

    def _counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        assert self._db is not None
        return dict(self._db.execute("SELECT item, score FROM counters WHERE dsg = ? AND name = ?"
                                     " ORDER BY score DESC, item LIMIT ?",
                                     (dataset_group, name, limit)).fetchall())

    async def read_whole(self, dataset_group: str, names: Sequence[str]) -> list[dict[str, float]]:
        return await self._run(self._read_whole, dataset_group, list(names))

    def _read_whole(self, dataset_group: str, names: list[str]) -> list[dict[str, float]]:
        assert self._db is not None
        found: dict[str, dict[str, float]] = {name: {} for name in names}
        for some in chunks(names):
            rows = self._db.execute(f"SELECT name, item, score FROM counters WHERE dsg = ?"
                                    f" AND name IN ({','.join('?' * len(some))})", (dataset_group, *some))
            for name, item, score in rows:
                found[name][item] = score
        return [found[name] for name in names]

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        return await self._run(self._erase, dataset_group, list(user_keys))

    def _erase(self, dataset_group: str, keys: list[str]) -> set[str]:
        assert self._db is not None, "start() first"
        found: set[str] = set()
        with scrubbed(self._db), self._db:
            self._db.execute("BEGIN IMMEDIATE")  # one transaction: one count up is both sides of it
            self._db.execute("INSERT INTO positions VALUES (?, 1) ON CONFLICT (name) "
                             "DO UPDATE SET pos = pos + 1", (erasures_name(dataset_group),))
            for some in chunks(keys):
                found.update(r[0] for r in self._db.execute(
                    f"DELETE FROM sessions WHERE dsg = ? AND user IN ({','.join('?' * len(some))})"
                    " RETURNING user", (dataset_group, *some)))
        return found

    async def erase_group(self, dataset_group: str) -> None:
        await self._run(self._erase_group, dataset_group)

    def _erase_group(self, dataset_group: str) -> None:
        assert self._db is not None, "start() first"
        with scrubbed(self._db), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM sessions WHERE dsg = ?", (dataset_group,))
            self._db.execute("DELETE FROM counters WHERE dsg = ?", (dataset_group,))
            for prefix in group_positions(dataset_group):
                self._db.execute("DELETE FROM positions WHERE substr(name, 1, ?) = ?",
                                 (len(prefix), prefix))


def _decode(version: object, raw: bytes | str) -> SessionState:
    if str(version) != str(SESSION_LAYOUT_VERSION):
        raise UnknownVersion(f"session layout version {version!r}, expected {SESSION_LAYOUT_VERSION}")
    return SessionState.from_json(raw)


# RedisSessionStore.save. ARGV: counts of expected positions (e), states (s), positions
# to set (p), counters that expire (x); the layout version; e expected values ("" = absent);
# s states; p positions; then (key index, amount, member) triples for the counters; last, x
# (key index, Unix time) pairs: EXPIREAT, after the increments (which create the key), so a
# Trending-Now bucket goes when no evaluation can read it (at once if that time is past).
# KEYS in the same order.
_SAVE = """
local e, s, p, v, x = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for i = 1, e do
  local cur = redis.call('GET', KEYS[i])
  if (cur or '') ~= ARGV[5 + i] then
    local found = {}
    for j = 1, e do found[j] = redis.call('GET', KEYS[j]) or '' end
    return found
  end
end
for i = 1, s do
  redis.call('HSET', KEYS[e + i], 'v', v, 'state', ARGV[5 + e + i])
end
for i = 1, p do
  redis.call('SET', KEYS[e + s + i], ARGV[5 + e + s + i])
end
for i = 6 + e + s + p, #ARGV - 2 * x, 3 do
  redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = #ARGV - 2 * x + 1, #ARGV, 2 do
  redis.call('EXPIREAT', KEYS[tonumber(ARGV[i])], ARGV[i + 1])
end
return 1
"""


class RedisSessionStore:
    def __init__(self, redis: RedisConnection, *, prefix: str = "opz") -> None:
        self.redis = redis
        self.prefix = prefix
        self._save_script: Any = None  # the registered _SAVE (EVALSHA, reloaded after a Redis restart)

    def key(self, dsg: str, user: str) -> str:
        return f"{self.prefix}:session:{dsg}:{user}"

    def position_key(self, name: str) -> str:
        return f"{self.prefix}:position:{name}"

    def counter_key(self, dsg: str, name: str) -> str:
        return f"{self.prefix}:counter:{dsg}:{name}"

    async def load(self, keys: Sequence[Key], positions: Sequence[str] = ()
                   ) -> tuple[list[SessionState | None], list[int | None]]:
        def queue(pipe: Any) -> None:
            for dsg, user in keys:
                pipe.hmget(self.key(dsg, user), "v", "state")
            for name in positions:
                pipe.get(self.position_key(name))

        if len(keys) + len(positions) <= POINT_READ_KEYS:  # a request's: shares a pipeline
            rows = await self.redis.small.call(queue, len(keys) + len(positions))
        else:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                queue(pipe)
                rows = await pipe.execute()
        states = [None if r[1] is None else _decode(r[0].decode(), r[1]) for r in rows[:len(keys)]]
        return states, [None if p is None else int(p) for p in rows[len(keys):]]

    async def save(self, states: Mapping[Key, SessionState],
                   positions: Mapping[str, int] | None = None,
                   counts: Increments | None = None, *,
                   expect: Mapping[str, int | None] | None = None) -> None:
        """One EVAL: check the expected positions, then write everything. A Lua script runs
        atomically and costs one round trip, where WATCH + MGET + MULTI/EXEC + UNWATCH cost four."""
        expect, positions, counts = dict(expect or {}), dict(positions or {}), counts or {}
        keys = [*(self.position_key(n) for n in expect), *(self.key(d, u) for d, u in states),
                *(self.position_key(n) for n in positions), *(self.counter_key(d, n) for d, n in counts)]
        first = len(expect) + len(states) + len(positions)  # counters' keys start after these
        expiring = [(i, at) for i, (_, name) in enumerate(counts, first + 1)
                    if (at := expires_at(name)) is not None]
        args: list[object] = [len(expect), len(states), len(positions), SESSION_LAYOUT_VERSION, len(expiring),
                              *("" if p is None else p for p in expect.values()),
                              *(_encode(s) for s in states.values()), *positions.values()]
        args += [a for i, items in enumerate(counts.values(), first + 1)
                 for item, x in items.items() for a in (i, x, item)]
        args += [a for pair in expiring for a in pair]
        if self._save_script is None:
            self._save_script = self.redis.client.register_script(_SAVE)
        found = await self._save_script(keys=keys, args=args)
        if found != 1:
            raise PositionMoved(f"{list(expect)} at {[f.decode() if f else None for f in found]},"
                                f" not {list(expect.values())}")

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        rows = await self.redis.client.zrevrange(self.counter_key(dataset_group, name), 0, limit - 1,
                                           withscores=True)
        return {item.decode(): score for item, score in rows}

    async def read_whole(self, dataset_group: str, names: Sequence[str]) -> list[dict[str, float]]:
        async with self.redis.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrange(self.counter_key(dataset_group, name), 0, -1, withscores=True)
            rows = await pipe.execute()
        return [{item.decode(): score for item, score in counter} for counter in rows]

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        found: set[str] = set()
        erasures = self.position_key(erasures_name(dataset_group))
        await self.redis.client.incr(erasures)
        for some in chunks(list(user_keys), 1000):
            async with self.redis.client.pipeline(transaction=False) as pipe:
                for user in some:
                    pipe.unlink(self.key(dataset_group, user))
                removed = await pipe.execute()
            found.update(user for user, n in zip(some, removed, strict=True) if n)
        await self.redis.client.incr(erasures)
        return found

    async def erase_group(self, dataset_group: str) -> None:
        """SCANs the keyspace for the group's keys: seconds on millions of keys, as rare as
        DeleteDatasetGroup."""
        prefixes = [self.key(dataset_group, ""), self.counter_key(dataset_group, ""),
                    *map(self.position_key, group_positions(dataset_group))]
        await unlink_matching(self.redis.client, [glob(p) + "*" for p in prefixes])


async def unlink_matching(client: Any, patterns: Sequence[str]) -> None:
    """UNLINK the keys matching each pattern, found by SCAN, 1,000 at a time."""
    for pattern in patterns:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)


def glob(text: str) -> str:
    """`text` matched literally in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
