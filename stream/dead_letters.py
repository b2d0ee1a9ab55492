"""Dead letters: records a consumer could not handle, kept with why, so the rest goes on.

One record that a consumer cannot handle (a value no calendar holds, a record of an unknown
contract version, a bug that a single event triggers) must not stop the events of every
dataset group behind it. `handle_or_set_aside` runs a consumer's batch; if it fails for a
reason other than a store being down, it runs the events one by one and sets aside those
that still fail. Each becomes a `DeadLetter` (kernel.contract): logged at ERROR with its
event id, counted, and kept where `personalize stream dead-letters` lists it: the topic
`opz.<dataset group>.dead-letter` in Kafka, a table of the embedded log's database.

A store that is down is not a bad record: those errors (`transient`) propagate, and the
caller holds its position and retries, so ordering and exactly-once are unchanged.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from kernel.contract import DatasetRecord, DeadLetter, Event, Undecodable, dead_letter, dead_letter_topic
from kernel.scrub import scrubbed
from kernel.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Transient = tuple[type[BaseException], ...]
Failed = Sequence[tuple[Event | DatasetRecord | Undecodable, BaseException | str]]


class DeadLetters(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        """Durable when it returns (SQLite commit / all in-sync replicas); raises OSError-like
        errors when it cannot be, which callers treat as a store being down."""

    async def list(self, dataset_group: str, limit: int = 100) -> list[DeadLetter]:
        """The group's dead letters, oldest first."""

    async def erase(self, dataset_group: str) -> None:
        """All of the group's dead letters (DeleteDatasetGroup): they hold its records."""


def open_dead_letters(settings: Settings) -> DeadLetters:
    if settings.kafka_bootstrap_servers:
        return KafkaDeadLetters(settings.kafka_bootstrap_servers, settings.kafka_replication_factor)
    return SqliteDeadLetters(settings.data_dir / "events.db")


async def handle_or_set_aside(items: list[T], handle: Callable[[list[T]], Awaitable[object]],
                              transient: Transient) -> list[tuple[T, Exception]]:
    """Handle `items` as one batch; when that fails (not transiently), each on its own. Returns
    the items that failed on their own, with their errors; the others are handled."""
    try:
        await handle(items)
        return []
    except transient:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug a record triggers: find the record
        if len(items) == 1:
            return [(items[0], exc)]
    failed = []
    for item in items:
        try:
            await handle([item])
        except transient:
            raise
        except Exception as exc:  # noqa: BLE001 - as above, one record at a time
            failed.append((item, exc))
    return failed


class Postbox:
    """Turns a consumer's failures into dead letters: logged, counted, stored."""

    def __init__(self, letters: DeadLetters, consumer: str,
                 counted: Callable[[str, int], None] = lambda consumer, n: None) -> None:
        self.letters, self.consumer, self.counted = letters, consumer, counted

    async def send(self, failed: Failed) -> None:
        if not failed:
            return
        now = time.time()
        letters = [dead_letter(self.consumer, record, error, now) for record, error in failed]
        for letter in letters:
            log.error("%s: dead letter for event %s of %s: %s", self.consumer, letter.event_id,
                      letter.dataset_group, letter.error)
        await self.letters.put(letters)
        self.counted(self.consumer, len(letters))


class SqliteDeadLetters:
    """Embedded mode: a table beside the events in the log's database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " dataset_group TEXT NOT NULL, letter BLOB NOT NULL)")
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.to_thread(self._db.close)
            self._db = None

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        rows = [(letter.dataset_group, letter.model_dump_json().encode()) for letter in letters]
        async with self._lock:
            await asyncio.to_thread(self._insert, rows)

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        assert self._db is not None, "start() first"
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO dead_letters (dataset_group, letter) VALUES (?, ?)", rows)

    async def list(self, dataset_group: str, limit: int = 100) -> list[DeadLetter]:
        async with self._lock:
            rows = await asyncio.to_thread(self._select, dataset_group, limit)
        return [DeadLetter.model_validate_json(r) for (r,) in rows]

    async def erase(self, dataset_group: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._delete, dataset_group)

    def _delete(self, dataset_group: str) -> None:
        assert self._db is not None, "start() first"
        with scrubbed(self._db), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM dead_letters WHERE dataset_group = ?", (dataset_group,))

    def _select(self, dataset_group: str, limit: int) -> list[tuple[bytes]]:
        assert self._db is not None, "start() first"
        return self._db.execute("SELECT letter FROM dead_letters WHERE dataset_group = ? ORDER BY id LIMIT ?",
                                (dataset_group, limit)).fetchall()


class KafkaDeadLetters:
    """Distributed mode: one single-partition topic per dataset group, kept as long as the
    broker keeps logs (`retention.ms` as the operator sets it)."""

    def __init__(self, bootstrap: str, replication_factor: int = 1, timeout_s: float = 10.0) -> None:
        self.bootstrap, self.replication_factor, self.timeout_s = bootstrap, replication_factor, timeout_s
        self._producer: Any = None
        self._topics: set[str] = set()

    async def start(self) -> None:
        """Nothing yet: the producer starts with the first dead letter (most workers never send one)."""

    async def _ready(self) -> Any:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, client_id="opz-dead-letters",
                                        acks="all", enable_idempotence=True,
                                        request_timeout_ms=int(self.timeout_s * 1000))
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def put(self, letters: Sequence[DeadLetter]) -> None:
        from aiokafka.errors import KafkaError

        try:
            async with asyncio.timeout(self.timeout_s):
                producer = await self._ready()
                if new := {dead_letter_topic(x.dataset_group) for x in letters} - self._topics:
                    await self._ensure(new)
                acks = [await producer.send(dead_letter_topic(x.dataset_group),
                                                  x.model_dump_json().encode()) for x in letters]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            raise ConnectionError(f"Kafka did not take {len(letters)} dead letter(s): {exc!r}") from exc

    async def _ensure(self, topics: set[str]) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="opz-dead-letters")
        await admin.start()
        try:
            result = await admin.create_topics([NewTopic(t, 1, self.replication_factor) for t in topics])
            for name, code, *_ in result.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise ConnectionError(f"could not create topic {name}: error code {code}")
        finally:
            await admin.close()
        self._topics |= topics

    async def list(self, dataset_group: str, limit: int = 100) -> list[DeadLetter]:
        """Read the topic from its start to its end as it is now, outside any consumer group
        (every partition, should a broker have created it with more than one)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = dead_letter_topic(dataset_group)
        partitions = await self._partitions(topic)
        if not partitions:
            return []
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            letters: list[DeadLetter] = []
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    letters += [DeadLetter.model_validate_json(m.value) for m in batch.get(tp, [])
                                if m.offset < ends[tp]]
            return sorted(letters, key=lambda x: x.failed_at)[:limit]
        finally:
            await consumer.stop()

    async def _partitions(self, topic: str) -> list[int]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="opz-dead-letters")
        await admin.start()
        try:
            if topic not in await admin.list_topics():
                return []
            [described] = await admin.describe_topics([topic])
            return sorted(p["partition"] for p in described["partitions"])
        finally:
            await admin.close()

    async def erase(self, dataset_group: str) -> None:
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        topic = dead_letter_topic(dataset_group)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="opz-dead-letters")
        try:
            await admin.start()
            if topic in await admin.list_topics():
                await admin.delete_topics([topic])
            deadline = time.monotonic() + 30  # a new dead letter must not meet the topic half deleted
            while topic in await admin.list_topics() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        except KafkaError as exc:
            raise ConnectionError(f"could not delete {topic}: {exc!r}") from exc
        finally:
            await admin.close()
        self._topics.discard(topic)
