"""Nothing accepted is lost, nothing is applied twice: load and faults on the real services.

Each test sends PutEvents over HTTP, then checks three places exactly: the log (Kafka or
the embedded SQLite log), the archive, and every user's session state.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from services import KafkaCluster, RedisServer
from support import Server, Worker, send_events

from stream.archive import Archive
from stream.contract import events_topic_pattern
from stream.log import EventLog, KafkaEventLog, SqliteEventLog
from stream.store import RedisSessionStore, SessionStore, SqliteSessionStore

SETTLE_TIMEOUT_S = 120  # until state and archive have caught up with every accepted event


@dataclass
class Deployment:
    """A running openpersonalize: one server, plus a stream worker in Kafka mode."""

    mode: str
    tmp: Path
    name: str  # dataset group, Redis prefix, Faust app id
    kafka: str | None = None
    redis: str | None = None
    server: Server | None = None
    worker: Worker | None = None
    tracking_id: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> Deployment:
        if self.mode == "kafka":
            assert self.kafka and self.redis
            self.env = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": self.kafka, "OPZ_REDIS_URL": self.redis,
                        "OPZ_REDIS_PREFIX": self.name, "OPZ_STREAM_APP_ID": f"{self.name}-stream",
                        "OPZ_STREAM_DATASET_GROUPS": self.name}
        self.server = Server(self.tmp / "api", env=self.env).start()
        control = self.server.client("personalize")
        dsg = control.create_dataset_group(name=self.name)["datasetGroupArn"]
        self.tracking_id = control.create_event_tracker(name=f"{self.name}-t",
                                                        datasetGroupArn=dsg)["trackingId"]
        if self.mode == "kafka":
            self.start_worker()
        return self

    def start_worker(self) -> None:
        self.worker = Worker(self.tmp, {**self.env, "OPZ_DATA_DIR": str(self.tmp / "worker")}).start()

    def stop(self) -> None:
        for part in (self.worker, self.server):
            if part is not None:
                part.stop()

    def send(self, users: int, per_user: int) -> list[str]:
        assert self.server is not None
        return asyncio.run(send_events(self.server.url, self.tracking_id, users=users,
                                       per_user=per_user))

    # ---- what is stored where ----

    def _log(self) -> EventLog:
        if self.mode == "kafka":
            assert self.kafka
            return KafkaEventLog(self.kafka, topic_pattern=events_topic_pattern(re.escape(self.name)))
        assert self.server
        return SqliteEventLog(self.server.data_dir / "events.db")

    def _store(self) -> SessionStore:
        if self.mode == "kafka":
            assert self.redis
            return RedisSessionStore(self.redis, prefix=self.name)
        assert self.server
        return SqliteSessionStore(self.server.data_dir / "sessions.db")

    def _archive(self) -> Archive:
        return Archive(self.tmp / ("worker" if self.mode == "kafka" else "api") / "archive")

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

    def settled(self, users: list[str], expected: Counter[str]) -> tuple[dict[str, int], list[str]]:
        """Per-user applied counts and archived ids, once they match `expected` (or time out)."""
        async def poll() -> tuple[dict[str, int], list[str]]:
            store, archive = self._store(), self._archive()
            await store.start()
            await archive.start()
            try:
                deadline = time.monotonic() + SETTLE_TIMEOUT_S
                while True:
                    states, _ = await store.load([(self.name, u) for u in users])
                    applied = {u: s.applied if s else 0 for u, s in zip(users, states, strict=True)}
                    archived = [e.event_id for e in await archive.read(self.name)]
                    if (applied == dict(expected) and len(archived) >= sum(expected.values())
                            or time.monotonic() > deadline):
                        return applied, archived
                    await asyncio.sleep(0.25)
            finally:
                await store.close()
                await archive.close()
        return asyncio.run(poll())

    def popularity_total(self) -> float:
        async def read() -> float:
            store = self._store()
            await store.start()
            try:
                return sum((await store.counter(self.name, "popularity", 100_000)).values())
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
                    states, _ = await store.load([(self.name, f"u{u}") for u in range(200)])
                    if sum(s.applied for s in states if s) >= applied:
                        return True
                    await asyncio.sleep(0.05)
                return False
            finally:
                await store.close()
        return asyncio.run(poll())

    def check(self, accepted: list[str], *, retried: bool = False) -> None:
        """Every accepted event in the log, in the archive once, and applied once.

        With faults, a call can be stored and still answered 503 (the ack was lost); its
        retry stores the same eventIds again, so the log may hold a few twice (`retried`).
        """
        per_user = Counter(i.rsplit("-", 1)[0] for i in set(accepted))
        applied, archived = self.settled(sorted(per_user), per_user)
        assert applied == dict(per_user), self.worker.output() if self.worker else ""
        assert sorted(archived) == sorted(set(accepted))
        assert self.popularity_total() == len(set(accepted))  # counters count each event once
        in_log = self.log_ids(len(set(accepted)))
        assert set(in_log) == set(accepted)
        if not retried:
            assert len(in_log) == len(accepted)


@pytest.fixture(params=["embedded", "kafka"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Deployment]:
    d = Deployment(request.param, tmp_path, unique)
    if request.param == "kafka":
        d.kafka = request.getfixturevalue("kafka_bootstrap")
        d.redis = request.getfixturevalue("redis_url")
    yield d.start()
    d.stop()


def test_50000_events_over_http_are_all_stored_archived_and_applied_once(
        deployment: Deployment) -> None:
    accepted = deployment.send(users=500, per_user=100)
    assert len(accepted) == len(set(accepted)) == 50_000
    deployment.check(accepted)


# ---- faults: each on its own broker and Redis, so restarting them disturbs no other test ----

@pytest.fixture(scope="module")
def own_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaCluster, RedisServer]]:
    base = tmp_path_factory.mktemp("own-services")
    kafka, redis = KafkaCluster(1, base_dir=base / "kafka"), RedisServer(base_dir=base / "redis")
    redis.start()
    kafka.start()
    yield kafka, redis
    kafka.stop()
    redis.stop()


@pytest.fixture
def faulty(own_services: tuple[KafkaCluster, RedisServer], tmp_path: Path,
           unique: str) -> Iterator[tuple[Deployment, KafkaCluster, RedisServer]]:
    kafka, redis = own_services
    d = Deployment("kafka", tmp_path, unique, kafka=kafka.bootstrap, redis=redis.url).start()
    yield d, kafka, redis
    d.stop()


def send_during(d: Deployment, fault, users: int = 200, per_user: int = 100) -> list[str]:  # type: ignore[no-untyped-def]
    """Send in the background; inject `fault` once the worker has applied some of it."""
    result: list[list[str]] = []
    sender = threading.Thread(target=lambda: result.append(d.send(users, per_user)))
    sender.start()
    assert d.wait_for_progress(applied=1000), "the worker applied nothing before the fault"
    fault()
    sender.join(SETTLE_TIMEOUT_S * 3)
    assert result, "sender did not finish"
    return result[0]


def test_worker_killed_mid_stream_and_restarted(faulty) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = faulty

    def kill_and_restart() -> None:
        d.worker.kill()
        time.sleep(1.0)
        d.start_worker()
    d.check(send_during(d, kill_and_restart), retried=True)


def test_broker_restarted_mid_stream(faulty) -> None:  # type: ignore[no-untyped-def]
    d, kafka, _ = faulty

    def restart_broker() -> None:
        kafka.stop_node(0)
        kafka.start_node(0)
        kafka.wait_ready()
    d.check(send_during(d, restart_broker), retried=True)


def test_redis_restarted_mid_stream_state_is_rebuilt(faulty) -> None:  # type: ignore[no-untyped-def]
    d, _, redis = faulty

    def restart_redis() -> None:
        redis.stop()  # no persistence: every session state is gone
        redis.start()
    d.check(send_during(d, restart_redis), retried=True)


def test_unreachable_kafka_answers_503_and_acknowledges_nothing(faulty) -> None:  # type: ignore[no-untyped-def]
    d, kafka, _ = faulty
    body = {"trackingId": d.tracking_id, "userId": "late", "sessionId": "s",
            "eventList": [{"eventId": "late-0", "eventType": "click", "itemId": "i", "sentAt": 1}]}
    kafka.stop_node(0)
    try:
        r = httpx.post(d.server.url + "/events", json=body, timeout=60)
        assert r.status_code == 503 and r.json()["__type"] == "ServiceUnavailableException", r.text
    finally:
        kafka.start_node(0)
        kafka.wait_ready()
    retried = asyncio.run(_retry_once(d.server.url, body))  # the client's retry is safe
    assert retried == 200
    d.check(["late-0"], retried=True)


async def _retry_once(url: str, body: dict) -> int:  # type: ignore[type-arg]
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(50):
            try:
                r = await http.post(url + "/events", json=body)
            except httpx.TransportError:
                r = None
            if r is not None and r.status_code == 200:
                return 200
            await asyncio.sleep(0.5)
    return r.status_code if r is not None else 0


def test_worker_stops_on_sigterm_even_with_the_broker_gone(faulty) -> None:  # type: ignore[no-untyped-def]
    d, kafka, _ = faulty
    d.send(users=1, per_user=10)  # the dataset group's topic exists: Faust starts
    deadline = time.monotonic() + 60
    while "stream worker started" not in d.worker.output(tail=None):  # Faust is running
        assert time.monotonic() < deadline, d.worker.output()
        time.sleep(0.2)
    kafka.stop_node(0)
    try:
        d.worker.proc.terminate()
        rc = d.worker.proc.wait(15)  # raises TimeoutExpired if it hangs (it used to spin forever)
        assert rc == 0, d.worker.output()
    finally:
        kafka.start_node(0)
        kafka.wait_ready()
