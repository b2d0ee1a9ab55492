"""The session-state seam: where per-user SessionState lives between events.

Embedded: SQLite under the data dir (state survives a restart with the log's offsets).
Distributed: Redis, one hash per user (layout in kernel/contract.py). Both pass the one
suite in tests/integration/test_session_store.py.
"""
from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from kernel.contract import SESSION_LAYOUT_VERSION, UnknownVersion, events_topic, records_topic
from kernel.scrub import chunks, scrubbed
from kernel.settings import Settings
from stream.counters import Increments
from stream.session import SessionState

Key = tuple[str, str]  # (dataset group name, user key)
MAX_SHOWN_IN_MEMORY = 1_000_000  # embedded: recommendation lists kept at most (~300 B each)
# a load this small (a request's: a user and its session) reads SQLite on the event loop
# (embedded) or shares a pipeline with other requests' (Redis)
POINT_READ_KEYS = 2


class PositionMoved(Exception):
    """A save expected a position that another writer has moved since (a partition that
    changed owners mid-batch): nothing was written; reload and skip what it applied."""


class SessionStore(Protocol):
    """Per-user states and per-item counters, plus log positions saved atomically with them.

    A position ("topic:partition" -> last applied offset) written in the same transaction
    as the states it produced lets a consumer skip what it already applied and notice
    when the store lost data (the position is gone) and must be rebuilt. Counters
    (stream/counters.py) ride in the same transaction, so they count each event once too.
    """

    async def start(self) -> None:
        """Connect; fails loudly if the backend is unreachable."""

    async def close(self) -> None:
        """Release connections."""

    async def ready(self) -> None:
        """Raise unless the store answers now (readiness checks)."""

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

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        """The `limit` highest-scoring items of one counter."""

    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        """The items a recommendation showed, for `ttl_s`: a later PutEvents naming the
        recommendationId without an impression list gets these (implicit impressions)."""

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        """What `remember` kept for each id of the dataset group; None where unknown or expired."""

    async def publish_live_model(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        """Say which HRNN version a dataset group serves (stream/live_state.py); a version
        created before the one already published does not replace it."""

    async def live_models(self) -> dict[str, dict[str, object]]:
        """dataset group -> {"model", "artifact", "created"} as published."""

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        """Delete these users' (or anonymous sessions') states; returns the keys that had one."""

    async def erase_group(self, dataset_group: str) -> None:
        """Delete all a dataset group has here: its users' states, the positions of its topics,
        its counters, the recommendations it showed and the live model it published."""


def group_positions(dataset_group: str) -> tuple[str, ...]:
    """The prefixes of the position names of a dataset group's topics ("<topic>:<partition>")."""
    return tuple(f"{t}:" for t in (events_topic(dataset_group), records_topic(dataset_group, "ITEMS"),
                                   records_topic(dataset_group, "USERS")))


@dataclass
class _Kept:
    """Embedded mode's recommendations shown and live models, in memory: it is one process. Every
    store of one sessions.db in the process shares them, so that a store opened to erase a
    dataset group (the control plane's) reaches what the serving one keeps."""

    # (dataset group, recommendation id) -> (expiry, the items as JSON): bytes, not a list, so
    # that the cyclic GC need not walk every entry (measured: docs/benchmarks.md, serving)
    shown: OrderedDict[tuple[str, str], tuple[float, bytes]] = field(default_factory=OrderedDict)
    live: dict[str, dict[str, object]] = field(default_factory=dict)


_KEPT: dict[Path, _Kept] = {}


def open_session_store(settings: Settings) -> SessionStore:
    if settings.redis_url:
        return RedisSessionStore(settings.redis_url, prefix=settings.redis_prefix)
    return SqliteSessionStore(settings.data_dir / "sessions.db")


def _encode(state: SessionState) -> bytes:
    return state.to_json()


class SqliteSessionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="session-store")
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # point reads, on the caller's thread
        kept = _KEPT.setdefault(path.resolve(), _Kept())
        self._shown, self._live = kept.shown, kept.live

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
        adds = [(dsg, name, item, x) for (dsg, name), items in (counts or {}).items()
                for item, x in items.items()]
        await self._run(self._save, rows, list((positions or {}).items()), adds, dict(expect or {}))

    def _save(self, rows: list[tuple[str, str, int, bytes]], positions: list[tuple[str, int]],
              adds: list[tuple[str, str, str, float]], expect: dict[str, int | None]) -> None:
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

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        return await self._run(self._counter, dataset_group, name, limit)

    def _counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        assert self._db is not None
        return dict(self._db.execute("SELECT item, score FROM counters WHERE dsg = ? AND name = ?"
                                     " ORDER BY score DESC, item LIMIT ?",
                                     (dataset_group, name, limit)).fetchall())


    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        now = time.monotonic()
        self._shown[(dataset_group, recommendation_id)] = (now + ttl_s, orjson.dumps(list(items)))
        # oldest first: one TTL for all, so the oldest is also the first to expire
        shown = self._shown
        while shown and (len(shown) > MAX_SHOWN_IN_MEMORY or next(iter(shown.values()))[0] < now):
            shown.popitem(last=False)

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        now = time.monotonic()
        hits = [self._shown.get((dataset_group, r)) for r in recommendation_ids]
        return [None if h is None or h[0] < now else orjson.loads(h[1]) for h in hits]


    async def publish_live_model(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        current = self._live.get(dataset_group)
        if current is None or float(current["created"]) <= created:  # type: ignore[arg-type]
            self._live[dataset_group] = {"model": model, "artifact": artifact, "created": created}

    async def live_models(self) -> dict[str, dict[str, object]]:
        return dict(self._live)

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        return await self._run(self._erase, dataset_group, list(user_keys))

    def _erase(self, dataset_group: str, keys: list[str]) -> set[str]:
        assert self._db is not None, "start() first"
        found: set[str] = set()
        with scrubbed(self._db), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for some in chunks(keys):
                found.update(r[0] for r in self._db.execute(
                    f"DELETE FROM sessions WHERE dsg = ? AND user IN ({','.join('?' * len(some))})"
                    " RETURNING user", (dataset_group, *some)))
        return found

    async def erase_group(self, dataset_group: str) -> None:
        await self._run(self._erase_group, dataset_group)
        # list() copies the keys in one C call: the event loop's thread may add some meanwhile
        for key in [k for k in list(self._shown) if k[0] == dataset_group]:
            self._shown.pop(key, None)
        self._live.pop(dataset_group, None)

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
# to set (p); the layout version; e expected values ("" = absent); s states; p positions;
# then (key index, amount, member) triples for the counters. KEYS in the same order.
_SAVE = """
local e, s, p, v = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
for i = 1, e do
  local cur = redis.call('GET', KEYS[i])
  if (cur or '') ~= ARGV[4 + i] then
    local found = {}
    for j = 1, e do found[j] = redis.call('GET', KEYS[j]) or '' end
    return found
  end
end
for i = 1, s do
  redis.call('HSET', KEYS[e + i], 'v', v, 'state', ARGV[4 + e + i])
end
for i = 1, p do
  redis.call('SET', KEYS[e + s + i], ARGV[4 + e + s + i])
end
for i = 5 + e + s + p, #ARGV, 3 do
  redis.call('ZINCRBY', KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
return 1
"""


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


class RedisSessionStore:
    def __init__(self, url: str, *, prefix: str = "opz") -> None:
        self.url = url
        self.prefix = prefix
        self._redis = None
        self._save_script = None  # the registered _SAVE (EVALSHA, reloaded after a Redis restart)
        self._small: Coalescer | None = None  # a request's point reads and writes

    def key(self, dsg: str, user: str) -> str:
        return f"{self.prefix}:session:{dsg}:{user}"

    def position_key(self, name: str) -> str:
        return f"{self.prefix}:position:{name}"

    def counter_key(self, dsg: str, name: str) -> str:
        return f"{self.prefix}:counter:{dsg}:{name}"

    async def start(self) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(self.url)
        await self._redis.ping()
        self._save_script = self._redis.register_script(_SAVE)
        self._small = Coalescer(self._redis)

    async def ready(self) -> None:
        assert self._redis is not None, "start() first"
        await self._redis.ping()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def load(self, keys: Sequence[Key], positions: Sequence[str] = ()
                   ) -> tuple[list[SessionState | None], list[int | None]]:
        assert self._redis is not None and self._small is not None, "start() first"

        def queue(pipe: Any) -> None:
            for dsg, user in keys:
                pipe.hmget(self.key(dsg, user), "v", "state")
            for name in positions:
                pipe.get(self.position_key(name))

        if len(keys) + len(positions) <= POINT_READ_KEYS:  # a request's: shares a pipeline
            rows = await self._small.call(queue, len(keys) + len(positions))
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
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
        assert self._redis is not None, "start() first"
        expect, positions, counts = dict(expect or {}), dict(positions or {}), counts or {}
        keys = [*(self.position_key(n) for n in expect), *(self.key(d, u) for d, u in states),
                *(self.position_key(n) for n in positions), *(self.counter_key(d, n) for d, n in counts)]
        args: list[object] = [len(expect), len(states), len(positions), SESSION_LAYOUT_VERSION,
                              *("" if p is None else p for p in expect.values()),
                              *(_encode(s) for s in states.values()), *positions.values()]
        first = len(expect) + len(states) + len(positions)  # counters' keys start after these
        args += [a for i, items in enumerate(counts.values(), first + 1)
                 for item, x in items.items() for a in (i, x, item)]
        found = await self._save_script(keys=keys, args=args)
        if found != 1:
            raise PositionMoved(f"{list(expect)} at {[f.decode() if f else None for f in found]},"
                                f" not {list(expect.values())}")

    def shown_key(self, dataset_group: str, recommendation_id: str) -> str:
        return f"{self.prefix}:shown:{dataset_group}:{recommendation_id}"

    async def remember(self, dataset_group: str, recommendation_id: str, items: Sequence[str],
                       ttl_s: float) -> None:
        assert self._small is not None, "start() first"
        key, body = self.shown_key(dataset_group, recommendation_id), orjson.dumps(list(items))
        await self._small.call(lambda pipe: pipe.set(key, body, px=max(1, int(ttl_s * 1000))), 1)

    async def recall(self, dataset_group: str, recommendation_ids: Sequence[str]) -> list[list[str] | None]:
        assert self._redis is not None, "start() first"
        if not recommendation_ids:
            return []
        raw = await self._redis.mget([self.shown_key(dataset_group, r) for r in recommendation_ids])
        return [None if r is None else orjson.loads(r) for r in raw]

    def live_key(self) -> str:
        return f"{self.prefix}:live-models"

    async def publish_live_model(self, dataset_group: str, model: str, artifact: str, created: float) -> None:
        assert self._redis is not None, "start() first"
        body = orjson.dumps({"model": model, "artifact": artifact, "created": created})
        await self._redis.eval(_PUBLISH_IF_NEWER, 1, self.live_key(), dataset_group, body, created)

    async def live_models(self) -> dict[str, dict[str, object]]:
        assert self._redis is not None, "start() first"
        return {k.decode(): orjson.loads(v) for k, v in (await self._redis.hgetall(self.live_key())).items()}

    async def counter(self, dataset_group: str, name: str, limit: int) -> dict[str, float]:
        assert self._redis is not None, "start() first"
        rows = await self._redis.zrevrange(self.counter_key(dataset_group, name), 0, limit - 1,
                                           withscores=True)
        return {item.decode(): score for item, score in rows}

    async def erase(self, dataset_group: str, user_keys: Collection[str]) -> set[str]:
        assert self._redis is not None, "start() first"
        found: set[str] = set()
        for some in chunks(list(user_keys), 1000):
            async with self._redis.pipeline(transaction=False) as pipe:
                for user in some:
                    pipe.unlink(self.key(dataset_group, user))
                removed = await pipe.execute()
            found.update(user for user, n in zip(some, removed, strict=True) if n)
        return found

    async def erase_group(self, dataset_group: str) -> None:
        """SCANs the keyspace for the group's keys: seconds on millions of keys, as rare as
        DeleteDatasetGroup."""
        assert self._redis is not None, "start() first"
        prefixes = [self.key(dataset_group, ""), self.counter_key(dataset_group, ""),
                    self.shown_key(dataset_group, ""),
                    *map(self.position_key, group_positions(dataset_group))]
        for pattern in [_glob(p) + "*" for p in prefixes]:
            batch: list[bytes] = []
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self._redis.unlink(*batch)
                    batch = []
            if batch:
                await self._redis.unlink(*batch)
        await self._redis.hdel(self.live_key(), dataset_group)


def _glob(text: str) -> str:
    """`text` matched literally in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


# HSET field ARGV[1] = ARGV[2] unless the stored body's "created" is later than ARGV[3]
_PUBLISH_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and tonumber(cjson.decode(cur)['created']) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
