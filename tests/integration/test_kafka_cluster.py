"""The 3-broker KRaft option of scripts/services.py: losing a broker loses no acknowledged write."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from services import KafkaCluster

N = 3000


async def produce(bootstrap: str, topic: str, start: int, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=30000)
    await producer.start()
    try:
        acks = [await producer.send(topic, str(i).encode(), key=str(i % 10).encode())
                for i in range(start, start + n)]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, expected: int) -> list[int]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[int] = []
    try:
        async with asyncio.timeout(120):
            while len(got) < expected:
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    got += [int(m.value) for m in msgs]
    finally:
        await consumer.stop()
    return got


async def brokers(bootstrap: str, want: int = 3, timeout_s: float = 60) -> int:
    """Brokers in the cluster metadata, polled until `want` (caches catch up in seconds)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            n = len((await admin.describe_cluster())["brokers"])
            if n >= want or time.monotonic() > deadline:
                return n
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def test_three_brokers_survive_a_sigkilled_node_and_take_it_back(tmp_path: Path) -> None:
    cluster = KafkaCluster(3, base_dir=tmp_path / "kafka", heap="384m")
    t0 = time.monotonic()
    cluster.start()
    try:
        assert asyncio.run(brokers(cluster.bootstrap)) == 3, f"started in {time.monotonic() - t0:.0f}s"

        async def create() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("replicated", 4, 3)])
            finally:
                await admin.close()
        asyncio.run(create())
        asyncio.run(produce(cluster.bootstrap, "replicated", 0, N))

        cluster.stop_node(1, graceful=False)  # a crash: leaders move after the session timeout
        asyncio.run(produce(cluster.bootstrap, "replicated", N, N))  # acks=all, min ISR 2

        cluster.start_node(1)  # same log dir, no re-format
        cluster.wait_ready()
        assert asyncio.run(brokers(cluster.bootstrap)) == 3
        got = asyncio.run(consume_all(cluster.bootstrap, "replicated", 2 * N))
        assert sorted(got) == list(range(2 * N))  # every acknowledged write, once
    finally:
        cluster.stop()
