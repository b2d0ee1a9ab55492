"""A running openpersonalize under load and faults, and the exact checks of what it stored.

Shared by the reliability and scale-out tests: start API processes (sharing one data dir)
and stream workers (one consumer group, sharing theirs), send PutEvents over HTTP, then
check three places exactly: the log (Kafka or the embedded SQLite log), the archive, and
every user's session state, including the order of each user's history.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from services import KafkaCluster, RedisServer
from support import Server, Worker, free_port, send_events, sent_item, stored_event_ids

from kernel.archive import Archive
from kernel.archive_parts import PartsArchive
from kernel.contract import events_topic_pattern
from kernel.object_store import Bucket, Folder
from stream.log import EventLog, KafkaEventLog, SqliteEventLog
from stream.stores import Stores, redis_stores, sqlite_stores

SETTLE_TIMEOUT_S = 120  # until state and archive have caught up with every accepted event


@contextlib.contextmanager
def dedicated_services(base: Path, nodes: int = 1,
                       **kafka: object) -> Iterator[tuple[KafkaCluster, RedisServer]]:
    """A Kafka cluster and a Redis of a test module's own: the faults it injects disturb no other test."""
    cluster = KafkaCluster(nodes, base_dir=base / "kafka", **kafka)  # type: ignore[arg-type]
    redis = RedisServer(base_dir=base / "redis")
    redis.start()
    cluster.start()
    try:
        yield cluster, redis
    finally:
        cluster.stop()
        redis.stop()


@dataclass
class Deployment:
    """`apis` API processes, plus `workers` stream workers in Kafka mode."""

    mode: str
    tmp: Path
    name: str  # dataset group, Redis prefix, Faust app id
    kafka: str | None = None
    redis: str | None = None
    apis: int = 1
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)  # more settings for every process
    # with OPZ_DATABASE_URL and OPZ_S3_BUCKET in `env`: a data dir per process, the archive in the bucket
    shared_nothing: bool = False
    servers: list[Server] = field(default_factory=list)
    started: list[Worker] = field(default_factory=list)  # killed ones stay listed
    tracking_id: str = ""

    @property
    def server(self) -> Server:
        return self.servers[0]

    @property
    def worker(self) -> Worker:
        """The newest worker."""
        return self.started[-1]

    def start(self) -> Deployment:
        if self.mode == "kafka":
            assert self.kafka and self.redis
            self.env = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": self.kafka, "OPZ_REDIS_URL": self.redis,
                        "OPZ_REDIS_PREFIX": self.name, "OPZ_STREAM_APP_ID": f"{self.name}-stream",
                        "OPZ_STREAM_DATASET_GROUPS": self.name, **self.env}
        for n in range(self.apis):  # one after another: the first creates control.db
            self.servers.append(Server(self.tmp / self._own("api", n), env=self.env).start())
        control = self.server.client("personalize")
        dsg = control.create_dataset_group(name=self.name)["datasetGroupArn"]
        self.tracking_id = control.create_event_tracker(name=f"{self.name}-t",
                                                        datasetGroupArn=dsg)["trackingId"]
        if self.mode == "kafka":
            for _ in range(self.workers):
                self.start_worker()
        return self

    def _own(self, kind: str, n: int) -> str:
        """The data dir of the n-th process of a kind: shared by its kind, or its own."""
        return f"{kind}{n}" if self.shared_nothing else kind

    def start_worker(self) -> Worker:
        data_dir = self.tmp / self._own("worker", len(self.started))
        worker = Worker(self.tmp, {**self.env, "OPZ_DATA_DIR": str(data_dir),
                                   "OPZ_METRICS_PORT": str(free_port())}).start()
        self.started.append(worker)
        return worker

    def stop(self) -> None:
        for part in [*self.started, *self.servers]:
            part.stop()

    def send(self, users: int, per_user: int, prefix: str = "u") -> list[str]:
        """Each user's calls alternate between the API processes."""
        return asyncio.run(send_events([s.url for s in self.servers], self.tracking_id,
                                       users=users, per_user=per_user, prefix=prefix))

    def send_during(self, fault: Callable[[], None], users: int = 200,
                    per_user: int = 100) -> list[str]:
        """Send in the background; inject `fault` once the workers have applied some of it."""
        result: list[list[str]] = []
        sender = threading.Thread(target=lambda: result.append(self.send(users, per_user)))
        sender.start()
        assert self.wait_for_progress(applied=1000), "the workers applied nothing before the fault"
        fault()
        sender.join(SETTLE_TIMEOUT_S * 3)
        assert result, "sender did not finish"
        return result[0]

    def outputs(self) -> str:
        return "\n".join(w.output() for w in self.started)

    # ---- what is stored where ----

    def _log(self) -> EventLog:
        if self.mode == "kafka":
            assert self.kafka
            return KafkaEventLog(self.kafka, topic_pattern=events_topic_pattern(re.escape(self.name)))
        return SqliteEventLog(self.server.data_dir / "events.db")

    def _store(self) -> Stores:
        if self.mode == "kafka":
            assert self.redis
            return redis_stores(self.redis, self.name)
        return sqlite_stores(self.server.data_dir / "sessions.db")

    async def archived_ids(self) -> list[str]:
        """Every event id the archive holds, with any repeats: Kafka mode's parts (the stream
        workers' data dir), or the embedded SQLite archive."""
        if self.mode == "kafka":
            where = Bucket(self.env["OPZ_S3_BUCKET"], "archive/", self.env["OPZ_S3_ENDPOINT_URL"]) \
                if self.shared_nothing else Folder(self.tmp / "worker" / "archive")
            return await asyncio.to_thread(stored_event_ids, PartsArchive(where), self.name)
        archive = Archive(self.tmp / "api" / "archive")
        await archive.start()
        try:
            return [e.event_id for e in await archive.read(self.name)]
        finally:
            await archive.close()

    def log_ids(self, expected: int) -> list[str]:
        async def read() -> list[str]:
            log = self._log()
            await log.start()
            ids: list[str] = []
            group = f"audit-{time.monotonic_ns()}"  # a fresh group reads from the start
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT_S):
                    while len(set(ids)) < expected:
                        ids += [e.event_id for e in await log.read(group, 5000, 1.0)]
                ids += [e.event_id for e in await log.read(group, 5000, 2.0)]  # nothing more?
            finally:
                await log.close()
            return ids
        return asyncio.run(read())

    def settled(self, users: list[str],
                expected: Counter[str]) -> tuple[dict[str, int], dict[str, list[str]], list[str]]:
        """Per-user applied counts and histories (items, oldest first) and the archived ids,
        once the counts match `expected` (or time out)."""
        async def poll() -> tuple[dict[str, int], dict[str, list[str]], list[str]]:
            store = self._store()
            await store.start()
            try:
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while True:
                    states, _ = await store.sessions.load([(self.name, u) for u in users])
                    applied = {u: s.applied if s else 0 for u, s in zip(users, states, strict=True)}
                    archived = await self.archived_ids()
                    if (applied == dict(expected) and len(archived) >= sum(expected.values())
                            or time.monotonic() > deadline):
                        histories = {u: [i.item for i in s.history] if s else []
                                     for u, s in zip(users, states, strict=True)}
                        return applied, histories, archived
                    await asyncio.sleep(0.25)
            finally:
                await store.close()
        return asyncio.run(poll())

    def popularity_total(self) -> float:
        async def read() -> float:
            store = self._store()
            await store.start()
            try:
                return sum((await store.counters.counter(self.name, "popularity", 100_000)).values())
            finally:
                await store.close()
        return asyncio.run(read())

    def wait_for_progress(self, applied: int, timeout_s: float = 60) -> bool:
        """Wait until states hold at least `applied` events (so a fault hits live state)."""
        async def poll() -> bool:
            store = self._store()
            await store.start()
            try:
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    states, _ = await store.sessions.load([(self.name, f"u{u}") for u in range(200)])
                    if sum(s.applied for s in states if s) >= applied:
                        return True
                    await asyncio.sleep(0.05)
                return False
            finally:
                await store.close()
        return asyncio.run(poll())

    def check(self, accepted: list[str], *, retried: bool = False, ordered: bool = True) -> None:
        """Every accepted event in the log, in the archive once, and applied once; `ordered`:
        each user's history in the order `send` sent it.

        With faults, a call can be stored and still answered 503 (the ack was lost); its
        retry stores the same eventIds again, so the log may hold a few twice (`retried`).
        """
        per_user = Counter(i.rsplit("-", 1)[0] for i in set(accepted))
        applied, histories, archived = self.settled(sorted(per_user), per_user)
        assert applied == dict(per_user), self.outputs()
        disordered = [u for u, n in per_user.items()
                      if ordered and histories[u] != [sent_item(k) for k in range(n)]]
        assert not disordered, f"{len(disordered)} users' histories out of order, e.g. " \
                               f"{disordered[0]}: {histories[disordered[0]]}"
        assert sorted(set(archived)) == sorted(set(accepted))
        if not retried:  # a retried call's eventIds are in the log, so the archive, twice
            assert len(archived) == len(set(accepted)), "the archive holds some events twice"
        assert self.popularity_total() == len(set(accepted))  # counters count each event once
        in_log = self.log_ids(len(set(accepted)))
        assert set(in_log) == set(accepted)
        if not retried:
            assert len(in_log) == len(accepted)
