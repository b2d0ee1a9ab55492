"""The stream workers' archive writer when the archive is in the bucket (stream.archive_parts).

A plain consumer group next to the Faust app, as the dataset writer is: it collects each
assigned partition's events for a window, then stores them as one part whose commit records
the partition's next offset. Its position is that offset, not the group's: on every
assignment it seeks each partition to what the archive holds, so events stored before a crash
are not stored again and events not stored are read again. Kafka's committed offsets follow
(they show the lag), and a record it cannot use is a dead letter, never a stop.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from stream.archive import ARCHIVE_GROUP, Unarchivable
from stream.archive_parts import PartsArchive, offset_key
from stream.contract import Event, Undecodable, decode_or_undecodable, events_topic_group
from stream.dead_letters import Failed, Postbox
from stream.metrics import StreamMetrics
from stream.supervision import retrying

log = logging.getLogger(__name__)
MAX_BUFFERED = 200_000  # events held before the window ends: a burst is stored at once


class ArchiveWriter(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, archive: PartsArchive, consumer: AIOKafkaConsumer, postbox: Postbox,
                 metrics: StreamMetrics, window_s: float) -> None:
        self.archive, self.consumer, self.postbox, self.metrics = archive, consumer, postbox, metrics
        self.window_s = window_s
        self.held: dict[TopicPartition, list[Any]] = defaultdict(list)

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        """What was held of a partition going elsewhere is dropped: its new owner starts where
        the archive's offset is, before these events."""
        for tp in revoked:
            self.held.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            at = (await asyncio.to_thread(self.archive.offsets, events_topic_group(tp.topic))).get(
                offset_key(tp.topic, tp.partition))
            if at is None:
                continue  # nothing archived from it yet: the group's position, else the earliest
            end = (await self.consumer.end_offsets([tp]))[tp]
            if at > end:  # the topic was deleted and created again since (a deleted dataset group)
                log.warning("archive: %s[%d] ends at %d, before the archived offset %d: reading it "
                            "from its start", tp.topic, tp.partition, end, at)
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, at)

    async def run(self, stop: asyncio.Event) -> None:
        due = time.monotonic() + self.window_s
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
                for tp, messages in batches.items():
                    self.held[tp].extend(messages)
                if time.monotonic() >= due or sum(map(len, self.held.values())) >= MAX_BUFFERED:
                    await self.flush()
                    due = time.monotonic() + self.window_s
        finally:
            with contextlib.suppress(KafkaError, OSError):  # a clean stop stores what it holds
                await self.flush()

    async def flush(self) -> None:
        for tp in list(self.held):
            messages = self.held.pop(tp, [])
            if messages:
                await self._store(tp, messages)

    async def _store(self, tp: TopicPartition, messages: list[Any]) -> None:
        group = events_topic_group(tp.topic)
        events: list[tuple[int, Event]] = []
        failed: Failed = []
        for m in messages:
            record = decode_or_undecodable(m.topic, m.value)
            if isinstance(record, Undecodable):
                failed.append((record, record.error))
            elif record.dataset_group != group:
                failed.append((record, Unarchivable(record, f"dataset group {record.dataset_group!r} "
                                                            f"on the events topic of {group!r}")))
            else:
                events.append((m.offset, record))
        next_offset = messages[-1].offset + 1
        done = await retrying(asyncio.to_thread, self.archive.store, group, tp.topic, tp.partition, events,
                              next_offset)
        self.metrics.archive_batch(len(events), done.new, len(done.refused))
        await retrying(self.postbox.send, [*failed, *((x.event, x) for x in done.refused)])
        with contextlib.suppress(CommitFailedError):  # rebalanced meanwhile: the archive has the offset
            await self.consumer.commit({tp: next_offset})


async def write_archive(bootstrap: str, pattern: str, archive: PartsArchive, postbox: Postbox,
                        metrics: StreamMetrics, window_s: float, stop: asyncio.Event) -> None:
    """Run the archive writer until `stop`, reconnecting after Kafka failures."""
    while not stop.is_set():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=ARCHIVE_GROUP, client_id="opz-archive",
            enable_auto_commit=False, auto_offset_reset="earliest",
            metadata_max_age_ms=2000)  # notice new dataset groups' topics quickly
        writer = ArchiveWriter(archive, consumer, postbox, metrics, window_s)
        try:
            consumer.subscribe(pattern=pattern, listener=writer)
            await consumer.start()
            await writer.run(stop)
        except (KafkaError, OSError) as exc:
            log.warning("archive writer: %r; retrying in 1 s", exc)
            await asyncio.sleep(1.0)
        finally:
            await consumer.stop()
