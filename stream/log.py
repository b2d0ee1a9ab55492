"""The event log seam: where an accepted event is durably stored before we answer 200.

It carries PutItems/PutUsers/PutActions records too (compacted topics in Kafka) and
PutActionInteractions events (a topic of their own, not compacted); a consumer group
follows either the events topics (the default) or the records topics (`read(topics=...)`).

Two implementations, picked by settings (`open_event_log`): SQLite in WAL mode for the
embedded default, and Kafka (idempotent producer, acks=all) when distributed. Both pass
the one suite in tests/integration/test_event_log.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from kernel.contract import (
    DatasetRecord,
    Event,
    compacted,
    decode_or_undecodable,
    encode,
    events_topic_pattern,
    key_of,
    topic_of,
)
from kernel.scrub import chunks, scrubbed
from kernel.settings import Settings

log = logging.getLogger(__name__)
TOPIC_DELETION_S = 30.0  # how long a deleted topic may take to leave the cluster's metadata


class LogUnavailable(RuntimeError):
    """The log could not store the events durably; the caller must not acknowledge them."""


class EventLog(Protocol):
    async def start(self) -> None:
        """Open connections; raises LogUnavailable if the backend cannot be reached."""

    async def close(self) -> None:
        """Flush and release everything; pending appends finish first."""

    async def append(self, events: Sequence[Event | DatasetRecord]) -> None:
        """Return only once every record is durable (SQLite commit / all in-sync replicas)."""

    async def read(self, group: str, max_events: int = 500, timeout_s: float = 1.0, *,
                   topics: str | None = None) -> list[Any]:
        """Next records for consumer group `group`, each key's in order; [] after timeout_s.

        `topics` (a regex, fixed per group) picks what the group follows; by default the
        events topics the log was opened for.

        At-least-once: whatever was read but not committed is delivered again after a restart.
        A record that does not decode comes as `Undecodable`, for the consumer's dead letters.
        """

    async def commit(self, group: str) -> None:
        """Mark everything `read` has returned to `group` as processed."""

    async def ready(self) -> None:
        """Raise LogUnavailable unless an append could be made now (readiness checks)."""


def open_event_log(settings: Settings, *, client_id: str = "opz",
                   dataset_groups: str = ".+") -> EventLog:
    """The log settings pick; `read` follows the dataset groups matching the regex."""
    pattern = events_topic_pattern(dataset_groups)
    if settings.kafka_bootstrap_servers:
        return KafkaEventLog(settings.kafka_bootstrap_servers, client_id=client_id,
                             topic_pattern=pattern, partitions=settings.kafka_partitions,
                             replication_factor=settings.kafka_replication_factor,
                             min_insync_replicas=settings.kafka_min_insync_replicas)
    return SqliteEventLog(settings.data_dir / "events.db", topic_pattern=pattern)


def newest_values(path: Path, topic: str, after: int, limit: int, scan: int) -> tuple[list[bytes], int]:
    """The embedded log's newest `limit` values of `topic` after offset `after`, oldest first,
    looking at most `scan` rows back from the head; and that head. For a reader beside the log
    (the console's live view): a read-only connection of its own, one snapshot, so the writer is
    never waited on and the head covers exactly the rows read."""
    if not path.exists():
        return [], after
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("BEGIN")
        head = db.execute("SELECT COALESCE(MAX(offset), 0) FROM events").fetchone()[0]
        rows = db.execute("SELECT value FROM events WHERE offset > ? AND topic = ? ORDER BY offset DESC "
                          "LIMIT ?", (max(after, head - scan), topic, limit)).fetchall()
    finally:
        db.close()
    return [value for (value,) in reversed(rows)], head


class SqliteEventLog:
    """An append-only table in SQLite (WAL, synchronous=FULL), with group commit.

    Concurrent appends are written in one transaction, so one fsync covers many requests.
    """

    def __init__(self, path: Path, topic_pattern: str = events_topic_pattern()) -> None:
        self.path = path
        self.topic_pattern = topic_pattern  # read()'s default
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-log")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[list[tuple[str, str, bytes]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._head = 0  # highest offset written
        self._cursors: dict[str, int] = {}  # group -> last offset handed out by read()
        self._new_data: asyncio.Condition | None = None

    async def start(self) -> None:
        self._new_data = asyncio.Condition()
        try:
            self._head = await self._run(self._open)
        except (OSError, sqlite3.Error) as exc:
            raise LogUnavailable(f"cannot open the event log at {self.path}: {exc}") from exc

    async def ready(self) -> None:
        if self._db is None:
            raise LogUnavailable("the event log is not open")

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS events (offset INTEGER PRIMARY KEY AUTOINCREMENT,"
                   " topic TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS group_offsets (grp TEXT PRIMARY KEY, pos INTEGER)")
        self._db = db
        return db.execute("SELECT COALESCE(MAX(offset), 0) FROM events").fetchone()[0]

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    async def append(self, events: Sequence[Event | DatasetRecord]) -> None:
        if not events:
            return
        rows = [(topic_of(e), key_of(e), encode(e)) for e in events]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await fut

    async def _drain(self) -> None:
        assert self._new_data is not None
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                self._head = await self._run(self._write, [r for rows, _ in batch for r in rows])
            except sqlite3.Error as exc:
                for _, fut in batch:
                    fut.set_exception(LogUnavailable(f"event log write failed: {exc}"))
                continue
            for _, fut in batch:
                fut.set_result(None)
            async with self._new_data:
                self._new_data.notify_all()

    def _write(self, rows: list[tuple[str, str, bytes]]) -> int:
        assert self._db is not None
        with self._db:  # one transaction
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO events (topic, key, value) VALUES (?, ?, ?)", rows)
            return self._db.execute("SELECT MAX(offset) FROM events").fetchone()[0]

    async def read(self, group: str, max_events: int = 500, timeout_s: float = 1.0, *,
                   topics: str | None = None) -> list[Any]:
        assert self._new_data is not None
        wanted = re.compile(topics or self.topic_pattern)
        if group not in self._cursors:
            self._cursors[group] = await self._run(self._committed, group)
        if self._cursors[group] >= self._head:
            async with self._new_data:
                try:
                    await asyncio.wait_for(
                        self._new_data.wait_for(lambda: self._cursors[group] < self._head), timeout_s)
                except TimeoutError:
                    return []
        rows = await self._run(self._fetch, self._cursors[group], max_events)
        if rows:
            self._cursors[group] = rows[-1][0]
        return [decode_or_undecodable(topic, value) for _, topic, value in rows if wanted.match(topic)]

    def _committed(self, group: str) -> int:
        assert self._db is not None
        row = self._db.execute("SELECT pos FROM group_offsets WHERE grp = ?", (group,)).fetchone()
        return row[0] if row else 0

    def _fetch(self, after: int, limit: int) -> list[tuple[int, str, bytes]]:
        assert self._db is not None
        return self._db.execute("SELECT offset, topic, value FROM events WHERE offset > ? ORDER BY offset"
                                " LIMIT ?", (after, limit)).fetchall()

    async def commit(self, group: str) -> None:
        if group in self._cursors:
            await self._run(self._commit, group, self._cursors[group])

    def _commit(self, group: str, pos: int) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("INSERT INTO group_offsets (grp, pos) VALUES (?, ?) ON CONFLICT(grp)"
                             " DO UPDATE SET pos = excluded.pos", (group, pos))

    async def erase(self, topics: Collection[str], keys: Collection[str] | None = None) -> int:
        """Delete the records of `topics` (only those of `keys`, if given), bytes and all; returns
        how many. Offsets are never reused, so every consumer's position stays true, and one not
        yet past them never gets them."""
        return await self._run(self._erase, list(topics), None if keys is None else list(keys))

    def _erase(self, topics: list[str], keys: list[str] | None) -> int:
        assert self._db is not None, "start() first"
        marks = ",".join("?" * len(topics))
        gone = 0
        with scrubbed(self._db), self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if keys is None:
                gone += self._db.execute(f"DELETE FROM events WHERE topic IN ({marks})", topics).rowcount
            for some in chunks(keys or []):
                gone += self._db.execute(f"DELETE FROM events WHERE topic IN ({marks}) AND key IN"
                                         f" ({','.join('?' * len(some))})", (*topics, *some)).rowcount
        return gone


async def _stop_within(producer, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    """Stop a retired producer; one stuck flushing batches the broker refuses is abandoned."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), timeout_s)


class KafkaEventLog:
    """One topic per dataset group (kernel.contract.events_topic), keyed by user."""

    def __init__(self, bootstrap_servers: str, *, client_id: str = "opz",
                 timeout_s: float = 10.0, topic_pattern: str = events_topic_pattern(),
                 partitions: int = 4, replication_factor: int = 1,
                 min_insync_replicas: int | None = None) -> None:
        self.bootstrap = bootstrap_servers
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.topic_pattern = topic_pattern  # read(): which events topics to follow
        self.partitions, self.replication_factor = partitions, replication_factor
        self.min_insync_replicas = min_insync_replicas  # None: the brokers' default
        self._producer = None
        self._producer_lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()  # old producers being stopped
        self._consumers: dict[str, object] = {}
        self._topics: set[str] = set()  # created (or found) by this process

    async def start(self) -> None:
        await self._ready_producer()

    async def ready(self) -> None:
        """A metadata round trip to the cluster, within the append timeout."""
        from aiokafka.errors import KafkaError

        producer = await self._ready_producer()
        try:
            async with asyncio.timeout(self.timeout_s):
                if not await producer.client.fetch_all_metadata():
                    raise LogUnavailable("Kafka answered no metadata")
        except (KafkaError, TimeoutError, OSError) as exc:
            raise LogUnavailable(f"Kafka is unreachable ({type(exc).__name__})") from None

    async def _ready_producer(self):  # type: ignore[no-untyped-def]
        """The producer, started anew if the last one was retired."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all",
                    enable_idempotence=True, linger_ms=1, request_timeout_ms=int(self.timeout_s * 1000))
                try:
                    await producer.start()
                except KafkaError as exc:
                    await producer.stop()
                    raise LogUnavailable(f"Kafka at {self.bootstrap} is unreachable: {exc}") from exc
                self._producer = producer
            return self._producer

    def _retire(self, producer) -> None:  # type: ignore[no-untyped-def]
        """After a failed append, the next one gets a fresh producer (a new producer id). An
        idempotent aiokafka producer whose in-flight batches a restarted broker lost retries
        them forever with OutOfOrderSequenceNumber (aio-libs/aiokafka#1017): without this,
        PutEvents would answer 503 until the process restarts."""
        if self._producer is producer:
            self._producer = None
            task = asyncio.get_running_loop().create_task(_stop_within(producer, 5.0))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def close(self) -> None:
        for consumer in self._consumers.values():
            await consumer.stop()  # type: ignore[attr-defined]
        self._consumers.clear()
        if self._retired:
            await asyncio.gather(*self._retired)
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _ensure_topics(self, topics: set[str]) -> None:
        """Create new dataset groups' topics with our partition count, not the broker's."""
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        durability = ({"min.insync.replicas": str(self.min_insync_replicas)}
                      if self.min_insync_replicas else {})
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        await admin.start()
        try:
            result = await admin.create_topics([NewTopic(
                t, self.partitions, self.replication_factor, topic_configs=durability | (
                    {"cleanup.policy": "compact"} if compacted(t) else {}))
                for t in topics])
            for name, code, *_ in result.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise LogUnavailable(f"could not create topic {name}: error code {code}")
        finally:
            await admin.close()
        self._topics |= topics

    async def append(self, events: Sequence[Event | DatasetRecord]) -> None:
        from aiokafka.errors import KafkaError

        producer = await self._ready_producer()
        try:
            async with asyncio.timeout(self.timeout_s):
                if new := {topic_of(e) for e in events} - self._topics:
                    await self._ensure_topics(new)
                acks = [await producer.send(topic_of(e), encode(e), key=key_of(e).encode()) for e in events]
                await asyncio.gather(*acks)
        except (KafkaError, TimeoutError) as exc:
            self._retire(producer)
            raise LogUnavailable(f"Kafka did not acknowledge the events: {exc!r}") from exc

    async def _consumer(self, group: str, topics: str):  # type: ignore[no-untyped-def]
        from aiokafka import AIOKafkaConsumer

        if group not in self._consumers:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=group, client_id=self.client_id,
                enable_auto_commit=False, auto_offset_reset="earliest",
                metadata_max_age_ms=2000)  # notice new dataset groups' topics quickly
            consumer.subscribe(pattern=topics)
            await consumer.start()
            self._consumers[group] = consumer
        return self._consumers[group]

    async def read(self, group: str, max_events: int = 500, timeout_s: float = 1.0, *,
                   topics: str | None = None) -> list[Any]:
        consumer = await self._consumer(group, topics or self.topic_pattern)
        batches = await consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_events)
        return [decode_or_undecodable(m.topic, m.value) for msgs in batches.values() for m in msgs]

    async def commit(self, group: str) -> None:
        if group in self._consumers:
            await self._consumers[group].commit()  # type: ignore[attr-defined]

    async def recreate_topics(self, topics: Collection[str]) -> set[str]:
        """Delete these topics, records and all, and create those that existed again, empty;
        returns those. A record cannot leave a Kafka topic on its own: the topic goes. It comes
        back at once because every process that appended to it holds it as created (and a
        broker that auto-creates topics would bring it back with its defaults, not ours):
        appends find it, with this log's partitions and policies."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.errors import KafkaError

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        try:
            await admin.start()
            existing = set(await admin.list_topics()) & set(topics)
            if existing:
                result = await admin.delete_topics(sorted(existing))
                for name, code, *_ in result.topic_error_codes:
                    if code != 0:
                        raise LogUnavailable(f"could not delete topic {name}: error code {code}")
                deadline = time.monotonic() + TOPIC_DELETION_S
                while set(await admin.list_topics()) & existing and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        except KafkaError as exc:
            raise LogUnavailable(f"Kafka at {self.bootstrap} could not delete {sorted(topics)}: "
                                 f"{exc!r}") from exc
        finally:
            await admin.close()
        self._topics -= set(topics)
        if existing:
            await self._ensure_topics(existing)
            log.info("deleted and created again, empty: %s", ", ".join(sorted(existing)))
        return existing
