"""`personalize stream worker`: one Faust worker process (run N of them, partitioned by user)."""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import faust
from aiokafka.errors import KafkaError

from kernel.archive_parts import PartsArchive
from kernel.contract import events_topic_pattern, records_topic_pattern
from kernel.datasets import DATASETS_GROUP
from kernel.settings import Settings
from stream.agents import TOPIC_SCAN_S, event_topics, register_agents
from stream.app import make_faust_app
from stream.applier import run_consumer
from stream.archive_writer import archive_group, write_archive
from stream.consumers import StreamParts
from stream.dead_letters import KafkaDeadLetters
from stream.log import KafkaEventLog, LogUnavailable
from stream.metrics import MetricsServer, StreamMetrics, new_registry
from stream.shutdown import STOP_DEADLINE_S, exit_within
from stream.stores import open_stores
from stream.supervision import Contact

log = logging.getLogger(__name__)


async def write_datasets(settings: Settings, parts: StreamParts, stop: asyncio.Event) -> None:
    """PutItems/PutUsers records -> the items/users datasets. A plain consumer group next to
    the Faust app: compacted topics need no per-key state here."""
    assert settings.kafka_bootstrap_servers
    postbox = parts.postbox("datasets")
    while not stop.is_set():
        records = KafkaEventLog(settings.kafka_bootstrap_servers, client_id="opz-datasets")
        try:
            await records.start()
            await run_consumer(records, DATASETS_GROUP, parts.datasets.put_async, stop, postbox=postbox,
                               topics=records_topic_pattern(settings.stream_dataset_groups))
        except (KafkaError, LogUnavailable, OSError) as exc:
            log.warning("dataset writer: %r; retrying in 1 s", exc)
            await asyncio.sleep(1.0)
        finally:
            await records.close()


def crashed(app: faust.App) -> bool:
    """Faust leaves a process running when a core service task dies (e.g. its conductor
    failed to create a topic while the broker restarted); we treat that as fatal."""
    return any(s.crashed for s in (app, app.consumer, app.producer, app.topics))


def stopping(stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT: stop cleanly, but within STOP_DEADLINE_S even where Faust's stop hangs."""
    stop.set()
    exit_within(STOP_DEADLINE_S)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None,
                     on_crash: Callable[[], None] | None = None) -> bool:
    """Run until SIGTERM/SIGINT (or `stop`): returns True, or False if Faust crashed.

    `on_crash` runs as soon as Faust crashed, before any attempt to stop it (the CLI
    re-executes the process: stopping a crashed Faust app can hang on its consumer
    thread). Nothing is lost: positions live with the states, the archive dedupes.
    """
    assert settings.kafka_bootstrap_servers and settings.redis_url, \
        "stream workers run in distributed mode: set OPZ_KAFKA_BOOTSTRAP_SERVERS and OPZ_REDIS_URL"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, stop)
    metrics = StreamMetrics(new_registry())
    kafka = Contact("kafka")
    server = None
    if settings.metrics_port:
        server = MetricsServer(metrics.registry, settings.host, settings.metrics_port, kafka.health)
        log.info("metrics and health on http://%s:%d/metrics, /health", settings.host, settings.metrics_port)
    letters = KafkaDeadLetters(settings.kafka_bootstrap_servers, settings.kafka_replication_factor)
    try:
        return await _run(settings, stop, on_crash, metrics, letters, kafka)
    finally:
        await letters.close()
        if server is not None:
            await server.close()


async def _run(settings: Settings, stop: asyncio.Event, on_crash: Callable[[], None] | None,
               metrics: StreamMetrics, letters: KafkaDeadLetters, kafka: Contact) -> bool:
    """The worker proper; `run_worker` holds what must outlive it (signals, the metrics port)."""
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers
    stores = open_stores(settings)
    await stores.start()
    parts = StreamParts.of(settings, stores, letters, metrics)
    records = asyncio.create_task(write_datasets(settings, parts, stop))
    # Faust needs Kafka and at least one topic to subscribe to: wait for both
    pattern = events_topic_pattern(settings.stream_dataset_groups)
    while not (topics := await event_topics(bootstrap, pattern)):
        if topics is not None:
            kafka.answered()
            log.info("no events topic yet (no event tracker has received events); waiting")
        try:
            await asyncio.wait_for(stop.wait(), TOPIC_SCAN_S)
            await stores.close()
            await records
            return True
        except TimeoutError:
            pass
    kafka.answered()  # it listed the topics
    archived = asyncio.create_task(write_archive(
        bootstrap, archive_group(settings.stream_app_id), pattern, PartsArchive.of(settings),
        parts.postbox("archive"), metrics, settings.archive_window_s, stop))
    app = make_faust_app(settings)
    following = asyncio.create_task(parts.live.run(stop))
    register_agents(app, topics=topics, pattern=pattern, parts=parts, bootstrap=bootstrap, kafka=kafka)
    await app.start()
    log.info("stream worker started (app %s, brokers %s)", settings.stream_app_id,
             settings.kafka_bootstrap_servers)
    try:
        while not crashed(app):
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
                return True
            except TimeoutError:
                pass
        log.error("Faust crashed (%r)", app.crash_reason)
        if on_crash is not None:
            on_crash()
        return False
    finally:
        stop.set()
        await asyncio.wait({asyncio.ensure_future(app.stop())}, timeout=5.0)
        await following
        await asyncio.wait({archived}, timeout=STOP_DEADLINE_S / 2)
        await stores.close()
        await asyncio.wait({records}, timeout=5.0)
