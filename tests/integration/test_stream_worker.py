"""Distributed mode end to end: PutEvents -> Kafka -> `personalize stream worker` -> Redis."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, Server, Worker, free_port

from stream.session import SessionState
from stream.stores import redis_stores

STATE_TIMEOUT_S = 60  # worker start = group join + pattern metadata; then milliseconds


@pytest.fixture
def distributed(tmp_path: Path, kafka_bootstrap: str, redis_url: str, unique: str) -> dict[str, str]:
    return {"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "OPZ_REDIS_URL": redis_url,
            "OPZ_REDIS_PREFIX": unique, "OPZ_STREAM_APP_ID": f"{unique}-stream",
            "OPZ_STREAM_DATASET_GROUPS": f"{unique}.*"}  # not other tests' dataset groups


@pytest.fixture
def server(tmp_path: Path, distributed: dict[str, str]) -> Iterator[Server]:
    s = Server(tmp_path / "data", env=distributed).start()
    yield s
    s.stop()


@pytest.fixture
def worker(tmp_path: Path, distributed: dict[str, str]) -> Iterator[Worker]:
    w = Worker(tmp_path, {**distributed, "OPZ_DATA_DIR": str(tmp_path / "worker")}).start()
    yield w
    w.stop()


def tracker(server: Server, name: str) -> str:
    control = server.client("personalize")
    dsg = control.create_dataset_group(name=name)["datasetGroupArn"]
    return control.create_event_tracker(name=f"{name}-t", datasetGroupArn=dsg)["trackingId"]


def put(server: Server, tracking_id: str, user: str, items: list[str], tag: str = "") -> None:
    server.client("personalize-events").put_events(
        trackingId=tracking_id, userId=user, sessionId=f"s-{user}",
        eventList=[{"eventId": f"{user}-{tag}{i}", "eventType": "click", "itemId": it,
                    "sentAt": 1_700_000_000 + i} for i, it in enumerate(items)])


def wait_for_states(redis_url: str, prefix: str, dsg: str, users: list[str], applied: int,
                    worker: Worker) -> list[SessionState | None]:
    async def poll() -> list[SessionState | None]:
        store = redis_stores(redis_url, prefix)
        await store.start()
        try:
            deadline = time.monotonic() + STATE_TIMEOUT_S
            while True:
                states, _ = await store.sessions.load([(dsg, u) for u in users])
                if all(s is not None and s.applied >= applied for s in states):
                    return states
                if time.monotonic() > deadline or worker.proc.poll() is not None:  # type: ignore[union-attr]
                    return states
                await asyncio.sleep(0.05)
        finally:
            await store.close()
    states = asyncio.run(poll())
    assert all(s is not None and s.applied == applied for s in states), (states, worker.output())
    return states


def test_events_reach_each_users_state_in_order(server: Server, worker: Worker, redis_url: str,
                                                unique: str) -> None:
    tracking_id = tracker(server, unique)
    users = [f"u{i}" for i in range(5)]
    for u in users:
        put(server, tracking_id, u, [f"{u}-a", f"{u}-b", f"{u}-c"])
        put(server, tracking_id, u, [f"{u}-d", f"{u}-e"], tag="x")
    states = wait_for_states(redis_url, unique, unique, users, 5, worker)
    for u, s in zip(users, states, strict=True):
        assert s is not None and [i.item for i in s.history] == [f"{u}-{c}" for c in "abcde"]
        assert s.session_id == f"s-{u}" and s.sessions == 1


def test_a_dataset_group_created_while_the_worker_runs_is_followed(
        server: Server, worker: Worker, redis_url: str, unique: str) -> None:
    first = tracker(server, unique)
    put(server, first, "u", ["a"])
    wait_for_states(redis_url, unique, unique, ["u"], 1, worker)
    later = tracker(server, f"{unique}-later")  # its topic appears after the worker subscribed
    put(server, later, "v", ["x", "y"])
    states = wait_for_states(redis_url, unique, f"{unique}-later", ["v"], 2, worker)
    assert [i.item for i in states[0].history] == ["x", "y"]  # type: ignore[union-attr]
    assert "following new events topics" in worker.output(tail=None)


def health_check(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """The containers' `opz-healthcheck worker` against a worker on this metrics port."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "healthcheck.py"), "worker", *args],
                          env={**os.environ, "OPZ_METRICS_PORT": str(port)}, capture_output=True,
                          text=True, timeout=30)


def test_the_health_check_asks_the_worker_whether_kafka_answers_it(
        tmp_path: Path, distributed: dict[str, str]) -> None:
    healthy, cut_off = free_port(), free_port()
    workers = [Worker(tmp_path, {**distributed, "OPZ_DATA_DIR": str(tmp_path / "w1"),
                                 "OPZ_METRICS_PORT": str(healthy)}).start(),
               Worker(tmp_path, {**distributed, "OPZ_DATA_DIR": str(tmp_path / "w2"),
                                 "OPZ_METRICS_PORT": str(cut_off),  # a broker address nobody listens on
                                 "OPZ_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}).start()]
    try:
        deadline = time.monotonic() + STATE_TIMEOUT_S
        while (ready := health_check(healthy)).returncode != 0:
            assert time.monotonic() < deadline, ready.stderr + workers[0].output()
            time.sleep(0.2)
        while (alive := health_check(cut_off, "--alive")).returncode != 0:  # its port is up
            assert time.monotonic() < deadline, alive.stderr + workers[1].output()
            time.sleep(0.2)
        refused = health_check(cut_off)
        assert refused.returncode == 1 and "kafka has not answered yet" in refused.stderr, refused.stderr
    finally:
        for w in workers:
            w.kill()
    gone = health_check(healthy, "--alive")
    assert gone.returncode == 1 and gone.stderr.startswith("unhealthy: http://127.0.0.1:")
