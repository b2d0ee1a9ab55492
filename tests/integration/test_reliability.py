"""Nothing accepted is lost, nothing is applied twice: load and faults on the real services.

Each test sends PutEvents over HTTP, then checks three places exactly (tests/deployment.py):
the log (Kafka or the embedded SQLite log), the archive, and every user's session state.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deployment import Deployment, dedicated_services
from services import KafkaCluster, RedisServer


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
    with dedicated_services(tmp_path_factory.mktemp("own-services")) as services:
        yield services


@pytest.fixture
def faulty(own_services: tuple[KafkaCluster, RedisServer], tmp_path: Path,
           unique: str) -> Iterator[tuple[Deployment, KafkaCluster, RedisServer]]:
    kafka, redis = own_services
    d = Deployment("kafka", tmp_path, unique, kafka=kafka.bootstrap, redis=redis.url).start()
    yield d, kafka, redis
    d.stop()


def test_worker_killed_mid_stream_and_restarted(faulty) -> None:  # type: ignore[no-untyped-def]
    d, _, _ = faulty

    def kill_and_restart() -> None:
        d.worker.kill()
        time.sleep(1.0)
        d.start_worker()
    d.check(d.send_during(kill_and_restart), retried=True)


def test_broker_restarted_mid_stream(faulty) -> None:  # type: ignore[no-untyped-def]
    d, kafka, _ = faulty

    def restart_broker() -> None:
        kafka.stop_node(0)
        kafka.start_node(0)
        kafka.wait_ready()
    d.check(d.send_during(restart_broker), retried=True)


def test_redis_restarted_mid_stream_state_is_rebuilt(faulty) -> None:  # type: ignore[no-untyped-def]
    d, _, redis = faulty

    def restart_redis() -> None:
        redis.stop()  # no persistence: every session state is gone
        redis.start()
    d.check(d.send_during(restart_redis), retried=True)


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
    d.check(["late-0"], retried=True, ordered=False)


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


def test_worker_and_api_stop_on_sigterm_within_10_s_even_with_the_broker_gone(faulty) -> None:  # type: ignore[no-untyped-def]
    d, kafka, _ = faulty
    d.send(users=1, per_user=10)  # the dataset group's topic exists: Faust starts
    deadline = time.monotonic() + 60
    while "stream worker started" not in d.worker.output(tail=None):  # Faust is running
        assert time.monotonic() < deadline, d.worker.output()
        time.sleep(0.2)
    kafka.stop_node(0)
    try:
        asked = time.monotonic()
        for process in (d.worker, d.server):
            process.proc.terminate()
        for process in (d.worker, d.server):
            process.proc.wait(30)  # raises TimeoutExpired if it hangs (it used to spin forever)
            took = time.monotonic() - asked
            assert took < 10, f"SIGTERM took {took:.1f} s\n{process.output()}"
        assert d.worker.proc.returncode == 0, d.worker.output()
    finally:
        kafka.start_node(0)
        kafka.wait_ready()
