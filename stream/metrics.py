"""Prometheus metrics of the session and archive consumers (stream workers, embedded mode).

Each process builds its own registry (`new_registry`) instead of using the library's global
one: the embedded API adds these metrics to its own, and a test can build as many as it
likes. No label carries a user, an item or an ARN, so the number of series stays fixed.
"""
from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from kernel.contract import Event
from stream.supervision import Health

# seconds; freshness reaches minutes while a worker drains a backlog
FRESHNESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                     30.0, 60.0, 300.0)
BATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


# a `_created` series beside every counter and histogram says when the process started
# counting: noise that doubles the series (PROCESS_COLLECTOR has the start time once)
disable_created_metrics()


class BuildInfo(Collector):
    """`opz_build_info{version, python} 1`: which release each process runs, for dashboards
    and for alerts on a fleet left half upgraded."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("opz_build_info", "The openpersonalize release and Python version "
                                   "this process runs (value 1)", labels=["version", "python"])
        family.add_metric([release(), platform.python_version()], 1)
        yield family


def release() -> str:
    """The installed openpersonalize's version (`personalize --version` too)."""
    try:
        return importlib.metadata.version("openpersonalize")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


BUILD_INFO = BuildInfo()


def new_registry() -> CollectorRegistry:
    """A registry with the process's CPU, memory and GC figures, as the global one has, and its
    build."""
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, BUILD_INFO):
        registry.register(collector)
    return registry


def freshness(received_at: float, now: float) -> float:
    """Seconds from the API accepting an event to its state being stored. The API's clock
    stamps `received_at`, so skew between hosts shifts it; a negative value is skew: 0."""
    return max(0.0, now - received_at)


def partition_lag(ends: Mapping[tuple[str, int], int],
                  applied: Mapping[tuple[str, int], int | None]) -> dict[tuple[str, int], int]:
    """Events of each partition not in session state yet: the log end offset (the next
    offset to be written) minus the next offset to apply. A partition with no applied
    position counts from offset 0 (from its start, while retention has deleted nothing)."""
    return {tp: max(0, end - (-1 if applied.get(tp) is None else applied[tp]) - 1)  # type: ignore[operator]
            for tp, end in ends.items()}


class PartitionLag(Collector):
    """`opz_stream_consumer_lag{topic, partition}` of the partitions this worker owns now.

    The worker replaces the whole set at each measurement and a scrape (another thread)
    reads it as it is: no half-updated set, and a partition that moved to another worker
    leaves this one's series at the next measurement. Topics are dataset groups' events
    topics, so the series are bounded by dataset groups x partitions.
    """

    def __init__(self) -> None:
        self._lag: dict[tuple[str, int], int] = {}

    def set(self, lag: Mapping[tuple[str, int], int]) -> None:
        self._lag = dict(lag)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("opz_stream_consumer_lag", "Events in a partition this worker "
                                   "owns that are not applied to session state yet (log end "
                                   "offset minus the next offset to apply)",
                                   labels=["topic", "partition"])
        for (topic, partition), n in sorted(self._lag.items()):
            family.add_metric([topic, str(partition)], n)
        yield family


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.applied = Counter("opz_stream_events_applied", "Events applied to session state "
                               "(each event once: redeliveries are counted as duplicates)",
                               registry=registry)
        self.archived = Counter("opz_stream_events_archived", "Events added to the training "
                                "archive", registry=registry)
        self.duplicates = Counter("opz_stream_duplicates_skipped", "Redelivered events skipped "
                                  "(same Kafka offset or same eventId), by consumer",
                                  ["consumer"], registry=registry)
        self.dead_letters = Counter("opz_stream_dead_letters", "Records a consumer could not handle, "
                                    "set aside as dead letters (each logged at ERROR with its event id)",
                                    ["consumer"], registry=registry)
        self.restarts = Counter("opz_stream_consumer_restarts", "Consumer tasks restarted after a "
                                "failure that no single record explains", ["consumer"], registry=registry)
        self.rebuilt = Counter("opz_stream_events_rebuilt", "Events re-applied to rebuild a "
                               "partition's states after the session store lost them",
                               registry=registry)
        self.batch_seconds = Histogram("opz_stream_apply_batch_duration_seconds", "One batch of "
                                       "a partition: load the states, apply, store them",
                                       buckets=BATCH_BUCKETS, registry=registry)
        self.freshness = Histogram("opz_stream_freshness_seconds", "From the API accepting an "
                                   "event (received_at) to its session state being stored",
                                   buckets=FRESHNESS_BUCKETS, registry=registry)
        for consumer in ("sessions", "archive"):  # both series exist from the first scrape
            self.duplicates.labels(consumer)
        for consumer in ("sessions", "archive", "datasets"):
            self.dead_letters.labels(consumer)
        self.lag = PartitionLag()
        registry.register(self.lag)

    @contextmanager
    def session_batch(self, offered: int) -> Iterator[Callable[[Sequence[Event]], None]]:
        """Time one apply of `offered` events; the applier calls the yielded function with
        the events that changed a state, right after storing them."""
        start = time.perf_counter()
        applied = 0

        def on_applied(events: Sequence[Event]) -> None:
            nonlocal applied
            now = time.time()
            applied += len(events)
            for event in events:
                self.freshness.observe(freshness(event.received_at, now))

        yield on_applied
        self.batch_seconds.observe(time.perf_counter() - start)
        self.applied.inc(applied)
        self.duplicates.labels("sessions").inc(offered - applied)

    def archive_batch(self, offered: int, added: int, set_aside: int = 0) -> None:
        """`set_aside`: events the archive had no row for (dead letters, counted by `dead`)."""
        self.archived.inc(added)
        self.duplicates.labels("archive").inc(offered - added - set_aside)

    def dead(self, consumer: str, count: int) -> None:
        self.dead_letters.labels(consumer).inc(count)

    def restarted(self, consumer: str) -> None:
        self.restarts.labels(consumer).inc()


class MetricsServer:
    """/metrics (and /health, when given) on its own port, served from a thread: a scrape never
    waits for the event loop, which a busy Faust agent can hold for a whole batch. /health
    answers `health()`'s body, 200 when healthy and 503 when not."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 health: Callable[[], Health] | None = None) -> None:
        metrics = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if health is None or environ.get("PATH_INFO") != "/health":
                return metrics(environ, start_response)
            healthy, body = health()
            start_response("200 OK" if healthy else "503 Service Unavailable",
                           [("Content-Type", "application/json")])
            return [json.dumps(body).encode()]

        self._server = make_server(host, port, app, _Server6 if ":" in host else ThreadingWSGIServer,
                                   handler_class=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()


class _Server6(ThreadingWSGIServer):
    """On an IPv6 address (OPZ_HOST `::`, `::1`)."""
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Scrapes and probes every few seconds are not news."""
