"""The smallest real slice of PutEvents -> Kafka -> Faust -> Redis, on the real services.

Proves the harness: scripts/services.py's broker and Redis, aiokafka's idempotent
producer, a consumer group, and a Faust agent writing to Redis.
"""
from __future__ import annotations

import asyncio
from collections import Counter

import faust
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

N, KEYS, PARTITIONS = 10_000, 50, 4
RECV_TIMEOUT_S = 120  # a first group join + 10k records on a 2-core box, with margin


async def produce(bootstrap: str, topic: str) -> Counter[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:  # pre-created with Faust's partition count: tables keyed from it must match
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    sent: Counter[str] = Counter()
    try:
        futures = []
        for i in range(N):
            key = f"user-{i % KEYS}"
            futures.append(await producer.send(topic, f'{{"i": {i}}}'.encode(), key=key.encode()))
            sent[key] += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def test_kafka_round_trip_redis_hash_and_a_faust_agent(
        kafka_bootstrap: str, redis_url: str, unique: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    topic = f"{unique}.proof"
    sent = await produce(kafka_bootstrap, topic)

    # 1. a consumer group sees each record exactly once
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"{unique}-g",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    seen: Counter[bytes] = Counter()
    try:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while sum(seen.values()) < N:
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    seen.update(m.value for m in msgs)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert len(seen) == N and set(seen.values()) == {1}

    # 2. Redis: a hash written and read back
    r = aioredis.from_url(redis_url)
    await r.hset(f"{unique}:h", mapping={"a": 1, "b": "two"})
    assert await r.hgetall(f"{unique}:h") == {b"a": b"1", b"b": b"two"}

    # 3. a Faust agent counts per key into Redis; counts equal what was produced
    counts = f"{unique}:counts"
    app = faust.App(f"{unique}-faust", broker=f"kafka://{kafka_bootstrap}", store="memory://",
                    web_enabled=False, topic_partitions=PARTITIONS, topic_replication_factor=1,
                    table_standby_replicas=0, broker_commit_interval=0.5,
                    datadir=str(tmp_path / "faust"))
    source = app.topic(topic, key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for key, _ in stream.items():
            await r.hincrby(counts, key.decode(), 1)

    await app.start()
    try:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            while sum(int(v) for v in (await r.hgetall(counts)).values()) < N:
                await asyncio.sleep(0.2)
    finally:
        await app.stop()
    got = {k.decode(): int(v) for k, v in (await r.hgetall(counts)).items()}
    await r.aclose()
    assert got == dict(sent)
