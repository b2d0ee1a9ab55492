"""The stream workers' archive writer (kernel.archive_parts).

A plain consumer group next to the Faust app, as the dataset writer is: it collects each
assigned partition's events for a window, then stores them as one part whose commit records
the partition's next offset. Its position is that offset, not the group's: on every
assignment it seeks each partition to what the archive holds, so events stored before a crash
are not stored again and events not stored are read again. Kafka's committed offsets follow
(they show the lag), and a record it cannot use is a dead letter, never a stop. (Faust's
`take_events` acks a batch when its agent is cancelled, handled or not: an archive agent
stopped mid-batch lost that batch's events from the archive.)
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from kernel.archive import Unarchivable, archive_day
from kernel.archive_parts import PartsArchive, offset_key
from kernel.contract import Event, Undecodable, decode_or_undecodable, events_topic_group
from stream.dead_letters import Failed, Postbox
from stream.metrics import StreamMetrics
from stream.supervision import retrying

log = logging.getLogger(__name__)
MAX_BUFFERED = 200_000  # events held before the window ends: a burst is stored at once
RECENT_IDS = 10_000  # event ids remembered per partition: a client's retry is stored once


def contiguous(offsets: Iterable[int], start: int) -> int:
    """The offset after the gapless run of `offsets` from `start`: how far a batch may commit.
    A consumer sought back in a rebalance can return records fetched before the seek beside
    those after it (repeats, gaps); those past the run are read again, never stored out of turn."""
    have, end = set(offsets), start
    while end in have:
        end += 1
    return end


class ArchiveWriter(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, archive: PartsArchive, consumer: AIOKafkaConsumer, postbox: Postbox,
                 metrics: StreamMetrics, window_s: float) -> None:
        self.archive, self.consumer, self.postbox, self.metrics = archive, consumer, postbox, metrics
        self.window_s = window_s
        self.held: dict[TopicPartition, list[Any]] = defaultdict(list)
        self.recent: dict[TopicPartition, dict[str, None]] = defaultdict(dict)  # ids stored, oldest first

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
        start = await self._start(tp, group, min(m.offset for m in messages))
        end = contiguous((m.offset for m in messages), start)
        if end <= max(m.offset for m in messages):  # a gap or a repeat: read the rest again
            self._rewind(tp, end)
        in_turn = {m.offset: m for m in messages if start <= m.offset < end}
        if not in_turn:
            return
        events, failed, repeats = self._decoded(tp, group, [in_turn[o] for o in sorted(in_turn)])
        # dead letters first: a crash between the two sends one again, rather than losing it
        await retrying(self.postbox.send, failed)
        done = await retrying(asyncio.to_thread, self.archive.store, group, tp.topic, tp.partition,
                              events, end)
        self._remember(tp, events)
        self.metrics.archive_batch(len(events) + repeats, done.new)
        with contextlib.suppress(CommitFailedError):  # rebalanced meanwhile: the archive has the offset
            await self.consumer.commit({tp: end})

    async def _start(self, tp: TopicPartition, group: str, lowest: int) -> int:
        """Where this batch must begin: the offset the archive holds for the partition (none yet:
        the batch's first), unless retention deleted the log up to past it."""
        archived = (await retrying(asyncio.to_thread, self.archive.offsets, group)).get(
            offset_key(tp.topic, tp.partition))
        if archived is None or lowest <= archived:
            return lowest if archived is None else archived
        first = (await self.consumer.beginning_offsets([tp]))[tp]
        if first <= archived:
            return archived  # records fetched before a seek: read again from the archived offset
        log.error("archive: %s[%d] starts at %d: retention deleted offsets %d to %d before they were "
                  "archived", tp.topic, tp.partition, first, archived, first - 1)
        return first

    def _rewind(self, tp: TopicPartition, offset: int) -> None:
        self.held.pop(tp, None)
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, offset)

    def _decoded(self, tp: TopicPartition, group: str,
                 batch: list[Any]) -> tuple[list[tuple[int, Event]], Failed, int]:
        """The batch's events not stored recently (by event id), the records it cannot use (dead
        letters), and how many repeated an event id stored recently (a client's retry)."""
        events: list[tuple[int, Event]] = []
        failed: Failed = []
        seen, repeats = set(self.recent[tp]), 0
        for m in batch:
            record = decode_or_undecodable(m.topic, m.value)
            if isinstance(record, Undecodable):
                failed.append((record, record.error))
            elif record.dataset_group != group:
                failed.append((record, Unarchivable(record, f"dataset group {record.dataset_group!r} "
                                                            f"on the events topic of {group!r}")))
            elif record.event_id in seen:
                repeats += 1
            elif problem := unarchivable(record):
                failed.append((record, problem))
            else:
                seen.add(record.event_id)
                events.append((m.offset, record))
        return events, failed, repeats

    def _remember(self, tp: TopicPartition, events: list[tuple[int, Event]]) -> None:
        recent = self.recent[tp]
        for _, event in events:
            recent[event.event_id] = None
        for old in list(recent)[:max(0, len(recent) - RECENT_IDS)]:
            del recent[old]


def unarchivable(event: Event) -> Unarchivable | None:
    """Why the archive has no row for `event` (kernel.archive.archive_day), or None: checked
    before the store, which then builds the rows, so its dead letter goes out first."""
    try:
        archive_day(event)
    except Unarchivable as exc:
        return exc
    return None


def archive_group(stream_app_id: str) -> str:
    """The archive writers' consumer group: one per stream app, as Faust's group is."""
    return f"{stream_app_id}-archive"


async def write_archive(bootstrap: str, group: str, pattern: str, archive: PartsArchive, postbox: Postbox,
                        metrics: StreamMetrics, window_s: float, stop: asyncio.Event) -> None:
    """Run the archive writer until `stop`, reconnecting after Kafka failures."""
    while not stop.is_set():
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, client_id="opz-archive",
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
