"""The embedded server's stream: what the stream workers do, in the API's process, on the
SQLite log.

Each consumer is supervised (restarted after a failure, shown on /health); each record it
cannot handle is a dead letter in the log's database.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kernel.archive import ARCHIVE_GROUP, Archive
from kernel.contract import Event, records_topic_pattern
from kernel.datasets import DATASETS_GROUP
from kernel.settings import Settings
from stream.applier import SESSION_GROUP, apply_batch, run_consumer
from stream.consumers import StreamParts
from stream.dead_letters import SqliteDeadLetters
from stream.log import EventLog
from stream.metrics import StreamMetrics
from stream.stores import Stores
from stream.supervision import ConsumerHealth, supervised


async def run_embedded(settings: Settings, event_log: EventLog, stores: Stores, stop: asyncio.Event,
                       metrics: StreamMetrics, health: ConsumerHealth) -> None:
    """Until `stop`: the sessions, archive and datasets consumers, and the live models."""
    archive = Archive(settings.data_dir / "archive")
    await archive.start()
    letters = SqliteDeadLetters(settings.data_dir / "events.db")
    await letters.start()
    parts = StreamParts.of(settings, stores, letters, metrics)
    inapplicable, unarchivable = parts.postbox("sessions"), parts.postbox("archive")

    async def apply(events: list[Event]) -> None:
        refused: list[tuple[Event, Exception]] = []
        with metrics.session_batch(len(events)) as on_applied:
            await apply_batch(events, stores.sessions, parts.limits, live=parts.live, on_applied=on_applied,
                              on_refused=refused.extend)
        await inapplicable.send(refused)

    async def add_to_archive(events: list[Event]) -> None:
        done = await archive.add(events)
        metrics.archive_batch(len(events), done.new, len(done.refused))
        await unarchivable.send([(x.event, x) for x in done.refused])

    def consumer(name: str, group: str, handle: Callable[[list[Any]], Awaitable[object]],
                 topics: str | None = None) -> Awaitable[None]:
        def run() -> Awaitable[None]:
            return run_consumer(event_log, group, handle, stop, postbox=parts.postbox(name), topics=topics)
        return supervised(name, run, stop, health)

    try:
        await asyncio.gather(
            supervised("live-models", lambda: parts.live.run(stop), stop, health),
            consumer("sessions", SESSION_GROUP, apply),
            consumer("archive", ARCHIVE_GROUP, add_to_archive),
            consumer("datasets", DATASETS_GROUP, parts.datasets.put_async, topics=records_topic_pattern()))
    finally:
        await archive.close()
        await letters.close()
