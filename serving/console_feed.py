"""The console's live view of a dataset group's events: the newest ones its log holds, then
those after a cursor, polled by the page.

Bounded whatever the traffic: at most FEED_EVENTS per poll, FEED_SCAN rows of the embedded log
looked at, FEED_WAIT_S spent reading Kafka. It reads without a consumer group (it commits
nothing and moves no other consumer) and shows no properties, impressions or client ids.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from kernel.contract import Event, decode_event
from kernel.settings import Settings
from stream.log import newest_values

FEED_EVENTS = 50  # newest events per poll: what a person can follow, whatever the traffic
FEED_SCAN = 20_000  # embedded log rows looked at per poll, so a quiet group costs a bounded read
FEED_WAIT_S = 3.0  # at most this long reading Kafka per poll
Positions = dict[int, int]  # partition -> the next offset to read


def feed_event(event: Event) -> dict[str, Any]:
    """What the live view shows of an event (no properties, impressions or ids of the client)."""
    return {"eventId": event.event_id, "userId": event.user_id, "sessionId": event.session_id,
            "eventType": event.event_type, "itemId": event.item_id, "eventValue": event.event_value,
            "sentAt": event.sent_at, "receivedAt": event.received_at}


def parse_cursor(cursor: str | None) -> Positions:
    """The feed's cursor: `partition:next offset,...` (Kafka) or one offset (the embedded log,
    partition 0). {} for a first poll."""
    if not cursor:
        return {}
    if ":" not in cursor:
        return {0: int(cursor)}
    return {int(p): int(o) for p, o in (pair.split(":") for pair in cursor.split(","))}


def format_cursor(positions: Positions, embedded: bool) -> str:
    if embedded:
        return str(positions.get(0, 0))
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


Tail = tuple[list[Event], Positions]  # events, oldest first; where the next poll starts

class Feed(Protocol):
    async def recent(self, topic: str, after: Positions, limit: int) -> Tail:
        """Events of `topic` after the positions `after` ({}: the newest), at most `limit`, oldest
        first; and the positions to ask after next time."""

    async def close(self) -> None:
        """Release what reading took (a Kafka consumer): the server is stopping."""


class SqliteFeed:
    """The embedded log, read beside its writer (stream.log.newest_values)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def close(self) -> None:
        """Each poll opens and closes its own connection: nothing is held."""

    async def recent(self, topic: str, after: Positions, limit: int) -> Tail:
        return await asyncio.to_thread(self._read, topic, after.get(0, 0), limit)

    def _read(self, topic: str, after: int, limit: int) -> Tail:
        values, head = newest_values(self.path, topic, after, limit, FEED_SCAN)
        return decoded(values), {0: head}


class KafkaFeed:
    """The topic's tail, read by one consumer of no group (it commits nothing and moves no
    other consumer), assigned to the topic asked about; polls take turns on it."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._consumer: Any = None
        self._admin: Any = None  # the partitions of a topic, as the cluster has them now
        self._lock = asyncio.Lock()

    async def recent(self, topic: str, after: Positions, limit: int) -> Tail:
        from aiokafka import TopicPartition

        async with self._lock:
            consumer, admin = await self._started()
            described = await admin.describe_topics([topic])  # fresh: a new dataset group's topic too
            partitions = sorted(p["partition"] for t in described if t["error_code"] == 0
                                for p in t["partitions"])
            if not partitions:
                return [], {}
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            ends, begins = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - limit, after.get(tp.partition, 0)))
            values: list[bytes] = []
            try:
                async with asyncio.timeout(FEED_WAIT_S):
                    while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                        batches = await consumer.getmany(*tps, timeout_ms=200)
                        values += [m.value for msgs in batches.values() for m in msgs]
            except TimeoutError:
                pass  # a slow broker: what came so far, and the next poll goes on from where this stopped
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
        return sorted(decoded(values), key=lambda e: e.received_at)[-limit:], positions

    async def close(self) -> None:
        async with self._lock:
            if self._consumer is not None:
                await self._consumer.stop()
                await self._admin.close()
                self._consumer = self._admin = None

    async def _started(self) -> tuple[Any, Any]:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        client_id="opz-console", enable_auto_commit=False)
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="opz-console")
            await consumer.start()
            await admin.start()
            self._consumer, self._admin = consumer, admin
        return self._consumer, self._admin


def decoded(values: Any) -> list[Event]:
    """The events among raw log values; one that does not decode is the stream's dead letter,
    not the console's to show."""
    out = []
    for value in values:
        try:
            out.append(decode_event(value))
        except ValueError:
            continue
    return out


def feed_of(settings: Settings) -> Feed:
    if settings.kafka_bootstrap_servers:
        return KafkaFeed(settings.kafka_bootstrap_servers)
    return SqliteFeed(settings.data_dir / "events.db")


