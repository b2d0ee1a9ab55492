"""Scale-out on one machine: 2 API processes and 2 stream workers (one consumer group) on a
3-broker KRaft cluster (replication 3, min.insync.replicas 2) and Redis; and the same sharing
no disk (a data dir per process, the control plane in PostgreSQL, the archive in a bucket).

Each user's calls alternate between the two APIs, one after another, so every user's
history must come out in the order sent whichever process took which call. A worker
killed with SIGKILL mid-stream leaves its partitions to the other, and a broker killed
mid-stream leaves two in-sync replicas, enough to go on acknowledging: either way every
accepted event is stored, archived and applied exactly once (tests/deployment.py).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from deployment import Deployment, dedicated_services
from services import KafkaCluster, RedisServer
from support import S3Service, Worker, consumer_lag

from kernel.contract import events_topic

PARTITIONS = 4
SETTINGS = {"OPZ_KAFKA_PARTITIONS": str(PARTITIONS), "OPZ_KAFKA_REPLICATION_FACTOR": "3",
            "OPZ_KAFKA_MIN_INSYNC_REPLICAS": "2"}
OWNERSHIP_TIMEOUT_S = 90  # a group join, a rebalance, or a dead member's session timeout (10 s)
Owners = list[dict[int, float]]  # per worker: the partitions it reports lag for, and the lag


@dataclass
class ScaledOut:
    d: Deployment
    kafka: KafkaCluster
    warm: list[str]  # accepted while the workers joined: part of what must be stored


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaCluster, RedisServer]]:
    # the brokers' default is 1, so a topic's min.insync.replicas=2 can only come from
    # OPZ_KAFKA_MIN_INSYNC_REPLICAS
    with dedicated_services(tmp_path_factory.mktemp("scale-out"), 3, heap="384m",
                      extra={"min.insync.replicas": "1"}) as services:
        yield services


@pytest.fixture
def scaled(cluster: tuple[KafkaCluster, RedisServer], tmp_path: Path,
           unique: str) -> Iterator[ScaledOut]:
    """Two APIs and two workers, both workers already owning some of the events topic's
    partitions (so a fault hits a group that shares the work)."""
    kafka, redis = cluster
    d = Deployment("kafka", tmp_path, unique, kafka=kafka.bootstrap, redis=redis.url,
                   apis=2, workers=2, env=dict(SETTINGS)).start()
    try:
        warm = d.send(users=4, per_user=10, prefix="w")  # creates the topic: the workers join
        wait_for_owners(d.started, events_topic(unique),  # each its share, none twice
                        lambda o: all(o) and sorted(p for x in o for p in x) == list(range(PARTITIONS)))
        yield ScaledOut(d, kafka, warm)
    finally:
        d.stop()


def wait_for_owners(workers: list[Worker], topic: str, done: Callable[[Owners], bool]) -> Owners:
    """The partitions each worker reports lag for (the ones it owns), once `done(owners)`."""
    deadline = time.monotonic() + OWNERSHIP_TIMEOUT_S
    while True:
        owners = [consumer_lag(w.metrics_url, topic) or {} for w in workers]
        if done(owners):
            return owners
        assert time.monotonic() < deadline, owners
        time.sleep(0.25)


def durability(bootstrap: str, topic: str) -> tuple[set[int], str]:
    """The topic's replica counts (over its partitions) and its min.insync.replicas."""
    async def describe() -> tuple[set[int], str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (meta,) = await admin.describe_topics([topic])
            (configs,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        finally:
            await admin.close()
        entries = configs.to_object()["resources"][0]["config_entries"]
        return ({len(p["replicas"]) for p in meta["partitions"]},
                next(e["config_value"] for e in entries if e["config_names"] == "min.insync.replicas"))
    return asyncio.run(describe())


def test_a_killed_worker_leaves_its_partitions_to_the_other(scaled: ScaledOut) -> None:
    d, topic = scaled.d, events_topic(scaled.d.name)
    assert durability(scaled.kafka.bootstrap, topic) == ({3}, "2")
    victim, survivor = d.started
    accepted = d.send_during(victim.kill)
    d.check(scaled.warm + accepted)
    # the survivor owns every partition now, and has applied all of them
    wait_for_owners([survivor], topic, lambda o: o == [{p: 0 for p in range(PARTITIONS)}])


def test_ingestion_goes_on_with_a_broker_down(scaled: ScaledOut) -> None:
    kafka = scaled.kafka
    try:
        accepted = scaled.d.send_during(lambda: kafka.stop_node(1, graceful=False))
        # checked on two brokers: every call was answered 200 in the end, nothing is missing
        scaled.d.check(scaled.warm + accepted, retried=True)
    finally:
        kafka.start_node(1)
        kafka.wait_ready()


def test_sharing_no_disk_a_killed_worker_loses_nothing_and_stores_nothing_twice(
        cluster: tuple[KafkaCluster, RedisServer], tmp_path: Path, unique: str, fresh_database: str,
        s3_service: S3Service, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, redis = cluster
    for name, value in s3_service.env.items():  # this test reads the bucket too
        monkeypatch.setenv(name, value)
    env = {**SETTINGS, **s3_service.env, "OPZ_DATABASE_URL": fresh_database, "OPZ_S3_BUCKET": bucket,
           "OPZ_S3_ENDPOINT_URL": s3_service.endpoint}
    d = Deployment("kafka", tmp_path, unique, kafka=kafka.bootstrap, redis=redis.url, apis=2, workers=2,
                   env=env, shared_nothing=True).start()
    try:
        warm = d.send(users=4, per_user=10, prefix="w")
        wait_for_owners(d.started, events_topic(unique),
                        lambda o: all(o) and sorted(p for x in o for p in x) == list(range(PARTITIONS)))
        victim, _ = d.started
        accepted = d.send_during(victim.kill)
        d.check(warm + accepted)  # the archive read from the bucket: each event exactly once
        assert not (tmp_path / "api0" / "control.db").exists()  # in PostgreSQL
        assert not (tmp_path / "worker1" / "archive").exists()  # in the bucket
    finally:
        d.stop()
