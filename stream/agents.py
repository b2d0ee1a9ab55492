"""Faust agents: decode, call the pure code, write through the port. Nothing else here."""
from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.exceptions import ConsumerNotStarted
from redis.exceptions import RedisError

from kernel.contract import Event, Undecodable, decode_event, decode_or_undecodable
from stream.applier import Live, Replay, apply_partition, position_name
from stream.consumers import StreamParts
from stream.dead_letters import Failed, handle_or_set_aside
from stream.metrics import StreamMetrics, partition_lag
from stream.partition_states import PartitionStates
from stream.session import Limits
from stream.store import SessionStore
from stream.supervision import TRANSIENT, Contact, retrying

log = logging.getLogger(__name__)
Agent = Callable[[Any], Awaitable[None]]
BATCH, WITHIN_S = 1000, 0.01  # a batch closes after 1,000 events or 10 ms, whichever first
TOPIC_SCAN_S = 2.0  # how often a worker looks for new dataset groups' topics
LAG_S = 2.0  # how often a worker measures its partitions' lag (one ListOffsets, one Redis read)
STORE_DOWN = (*TRANSIENT, RedisError)  # hold the partition and retry: not the records' fault


async def event_topics(bootstrap: str, pattern: str) -> set[str] | None:
    """The events topics matching `pattern`; None while Kafka cannot be reached."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        return {t for t in await admin.list_topics() if re.match(pattern, t)}
    except KafkaError as exc:
        log.warning("cannot list topics (%s); will retry", exc)
        return None
    finally:
        await admin.close()


def register_agents(app: faust.App, *, topics: set[str], pattern: str, parts: StreamParts, bootstrap: str,
                    kafka: Contact | None = None) -> None:
    """The session agent over every dataset group's events topic, new ones included (the
    archive is stream.archive_writer's).
    A record either cannot handle is a dead letter (stream.dead_letters); a store that is down
    holds the partition until it is back."""
    # Faust cannot subscribe by pattern ("XXX pattern does not work" in its aiokafka driver),
    # so a timer adds new topics to the agent's subscription. A new dataset group is rare:
    # resubscribe after 1 s instead of Faust's 45 s batching of subscription changes.
    events = app.topic(*sorted(topics), key_serializer="raw", value_serializer="raw")
    app.topics._resubscribe_sleep_lock_seconds = 1.0

    store, limits, metrics, live = parts.stores.sessions, parts.limits, parts.metrics, parts.live
    inapplicable = parts.postbox("sessions")
    kept = PartitionStates()  # what this worker stored last: read from memory while still the store's

    async def apply(topic: str, partition: int, records: list[tuple[int, Event]]) -> Failed:
        """One partition's records; on a failure no single event explains, each on its own
        (without a replay: a record set aside leaves a gap the position steps over)."""
        refused: list[tuple[Event, Exception]] = []
        replay = _replayer(bootstrap, topic, partition, store, limits, metrics, live)

        async def one_batch(part: list[tuple[int, Event]]) -> None:
            with metrics.session_batch(len(part)) as on_applied:
                await apply_partition(part, position=position_name(topic, partition), store=store,
                                      limits=limits, on_applied=on_applied, on_refused=refused.extend,
                                      live=live, replay=replay if part is records else None, kept=kept)

        failed = await retrying(handle_or_set_aside, records, one_batch, STORE_DOWN, transient=STORE_DOWN)
        return [*refused, *((event, exc) for (_, event), exc in failed)]

    @app.agent(events, name="sessions")
    @counted_restarts("sessions", metrics)
    async def sessions(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take_events(BATCH, within=WITHIN_S):
            by_tp: dict[tuple[str, int], list[tuple[int, Event]]] = {}
            failed: Failed = []
            for ev in batch:
                m = ev.message
                record = decode_or_undecodable(m.topic, m.value)
                if isinstance(record, Undecodable):
                    failed.append((record, record.error))
                else:
                    by_tp.setdefault((m.topic, m.partition), []).append((m.offset, record))
            for (topic, partition), records in by_tp.items():
                failed += await apply(topic, partition, records)
            await retrying(inapplicable.send, failed, transient=STORE_DOWN)

    @app.timer(TOPIC_SCAN_S)
    async def follow_new_dataset_groups() -> None:
        found = await event_topics(bootstrap, pattern)
        if found is not None and kafka is not None:
            kafka.answered()  # every TOPIC_SCAN_S: what the worker's /health reports
        new = (found or set()) - set(events.topics)
        if not new:
            return
        log.info("following new events topics %s", sorted(new))
        # the agent iterates a clone of `events`: extend every channel subscribed to them
        for channel in [c for c in app.topics if set(c.topics) & set(events.topics)]:
            channel.topics = sorted({*channel.topics, *new})
            app.topics.discard(channel)  # flags the change; the conductor resubscribes
            app.topics.add(channel)
        events.topics = sorted({*events.topics, *new})

    @app.timer(LAG_S)
    async def measure_lag() -> None:
        lag = await _lag(app, pattern, store)
        if lag is not None:
            metrics.lag.set(lag)


async def _lag(app: faust.App, pattern: str, store: SessionStore) -> dict[tuple[str, int], int] | None:
    """Lag of the events partitions assigned to this worker now, against the positions its
    session state holds (what a reader of the state sees, not Faust's commits, which trail
    by up to a commit interval); None while Kafka or the store cannot answer."""
    try:
        tps = sorted(tp for tp in app.consumer.assignment() if re.match(pattern, tp.topic))
        if not tps:
            return {}
        ends = await app.consumer.highwaters(*tps)
        _, positions = await store.load([], [position_name(tp.topic, tp.partition) for tp in tps])
    except (ConsumerNotStarted, KafkaError, OSError, RedisError) as exc:
        log.debug("cannot measure lag (%r); keeping the last figures", exc)
        return None
    except Exception:  # noqa: BLE001 - a Faust timer that raises crashes the app: a metric must not
        log.exception("measuring lag failed; keeping the last figures")
        return None
    return partition_lag({(tp.topic, tp.partition): ends[tp] for tp in tps if tp in ends},
                         {(tp.topic, tp.partition): p for tp, p in zip(tps, positions, strict=True)})


def counted_restarts(consumer: str, metrics: StreamMetrics) -> Callable[[Agent], Agent]:
    """An agent that raises is restarted by Faust's supervisor; count it and log it, since
    no single record explained it (those are dead letters)."""
    def wrap(agent: Agent) -> Agent:
        @functools.wraps(agent)
        async def run(stream):  # type: ignore[no-untyped-def]
            try:
                await agent(stream)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.restarted(consumer)
                log.exception("%s agent failed; Faust restarts it", consumer)
                raise
        return run
    return wrap


def _replayer(bootstrap: str, topic: str, partition: int, store: SessionStore,
              limits: Limits, metrics: StreamMetrics, live: Live | None) -> Replay:
    """Rebuild one partition's states by re-reading it, outside the group, up to `until`."""
    async def replay(start: int | None, until: int) -> None:
        log.warning("rebuilding session state of %s[%d] from offset %s to %d",
                    topic, partition, "start" if start is None else start, until)
        tp = TopicPartition(topic, partition)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, start)
            while await consumer.position(tp) < until:
                msgs = (await consumer.getmany(tp, timeout_ms=1000, max_records=BATCH)).get(tp, [])
                records = [(m.offset, decode_event(m.value)) for m in msgs if m.offset < until]
                if records:
                    metrics.rebuilt.inc(await apply_partition(
                        records, position=position_name(topic, partition), store=store, limits=limits,
                        replay=None, live=live))
        finally:
            await consumer.stop()
    return replay
