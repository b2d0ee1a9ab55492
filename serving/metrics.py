"""Prometheus metrics of the API process: GET /metrics, requests per operation, events accepted.

Requests are counted by an ASGI middleware, so handlers carry no metric code; events are
counted where they become durable (the event log's append). Label values come from fixed
sets (the operations we implement, HTTP statuses, ITEMS/USERS): a client sending made-up
targets or paths cannot add series, and no label ever holds an ARN or a user.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import InfoMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kernel.contract import RECORD_TYPES, DatasetRecord, Event
from serving.control.base import TARGET_PREFIX
from serving.log_format import ACCESS
from stream.log import EventLog
from stream.metrics import BUILD_INFO

# the rest-json routes (personalize-events, personalize-runtime), all POST
REST_OPERATIONS = {"/events": "PutEvents", "/items": "PutItems", "/users": "PutUsers",
                   "/actions": "PutActions", "/action-interactions": "PutActionInteractions",
                   "/recommendations": "GetRecommendations",
                   "/personalize-ranking": "GetPersonalizedRanking",
                   "/action-recommendations": "GetActionRecommendations"}
OPS_ROUTES = {"/health": "health", "/ready": "ready", "/metrics": "metrics"}  # GET
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
APPEND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def operation_name(method: str, path: str, target: str | None, known: Container[str]) -> str:
    """The `operation` label of a request: the Personalize operation, `health`/`metrics`,
    `unknown` for a control-plane target we do not serve, else `other` (docs, 404s, CORS
    preflights)."""
    if method == "POST" and path == "/":
        op = target[len(TARGET_PREFIX):] if target and target.startswith(TARGET_PREFIX) else None
        return op if op in known else "unknown"
    if method == "POST" and path in REST_OPERATIONS:
        return REST_OPERATIONS[path]
    if method == "GET" and path in OPS_ROUTES:
        return OPS_ROUTES[path]
    return "other"


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter("opz_api_requests", "HTTP requests answered, by operation and "
                                "status", ["operation", "status"], registry=registry)
        self.latency = Histogram("opz_api_request_duration_seconds", "From the request's arrival "
                                 "to the end of the answer, by operation", ["operation"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.events = Counter("opz_api_events_accepted", "Events PutEvents stored durably "
                              "(then answered 200)", registry=registry)
        self.records = Counter("opz_api_records_accepted", "PutItems (ITEMS), PutUsers (USERS), PutActions "
                               "(ACTIONS) and PutActionInteractions (ACTION_INTERACTIONS) records stored "
                               "durably", ["dataset_type"], registry=registry)
        self.append_seconds = Histogram("opz_api_log_append_duration_seconds", "One append to the "
                                        "event log (SQLite commit or every Kafka ack), failed "
                                        "ones included", buckets=APPEND_BUCKETS, registry=registry)
        for dataset_type in RECORD_TYPES:
            self.records.labels(dataset_type)
        self._series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def request(self, operation: str, status: int, seconds: float) -> None:
        # labels() resolves a child per call; the set is bounded, so keep them (hot path)
        series = self._series.get((operation, status))
        if series is None:
            series = self._series[(operation, status)] = (
                self.requests.labels(operation, str(status)), self.latency.labels(operation))
        series[0].inc()
        series[1].observe(seconds)

    def stored(self, records: Sequence[Event | DatasetRecord]) -> None:
        events = 0
        for r in records:
            if isinstance(r, Event):
                events += 1
            else:
                self.records.labels(r.dataset_type).inc()
        self.events.inc(events)


class ServedVersions(Collector):
    """`opz_api_campaign_solution_version_info{account, region, campaign, solution_version} 1`:
    which model each campaign answers with, read from the control plane at each scrape, so an
    UpdateCampaign (or a synced campaign's new version) shows at the next one and a deleted
    campaign's series goes. One series per campaign: two accounts' campaigns of one name are
    two series."""

    def __init__(self, versions: Callable[[], Iterable[tuple[str, str, str, str]]]) -> None:
        self.versions = versions

    def collect(self) -> Iterator[Metric]:
        family = InfoMetricFamily("opz_api_campaign_solution_version", "The solution version "
                                  "(solution/id) each campaign answers with",
                                  labels=["account", "region", "campaign"])
        for account, region, campaign, version in sorted(self.versions()):
            family.add_metric([account, region, campaign], {"solution_version": version})
        yield family


class RequestMetrics:
    """ASGI middleware: one count and one latency observation per request. Outermost, so it
    sees every answer; a handler that raised is answered 500 outside it, and counted so."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, known: Container[str],
                 access_log: bool = False) -> None:
        self.app, self.metrics, self.known, self.access_log = app, metrics, known, access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = _header(scope, b"x-amz-target") if scope["path"] == "/" else None
        operation = operation_name(scope["method"], scope["path"], target, self.known)
        status = 500
        start = time.perf_counter()

        async def send_and_see(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_see)
        finally:
            took = time.perf_counter() - start
            self.metrics.request(operation, status, took)
            if self.access_log:
                access(scope, operation, status, took)


def access(scope: Scope, operation: str, status: int, took_s: float) -> None:
    """One access log line: the route, never its query string or body (they can carry user ids)."""
    client = scope.get("client") or ("", 0)
    logging.getLogger(ACCESS).info(
        "%s %s %s %d %.1f ms", client[0], scope["method"], scope["path"], status, took_s * 1000,
        extra={"client": client[0], "method": scope["method"], "path": scope["path"], "operation": operation,
               "status": status, "duration_ms": round(took_s * 1000, 3)})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class MeteredEventLog:
    """The API's EventLog, timing each append and counting what it stored: an append that
    returned is durable, and the handler answers 200 right after it."""

    def __init__(self, log: EventLog, metrics: ApiMetrics,
                 attributed: Callable[[Sequence[Event]], None] = lambda events: None) -> None:
        self.log, self.metrics, self.attributed = log, metrics, attributed

    async def start(self) -> None:
        await self.log.start()

    async def close(self) -> None:
        await self.log.close()

    async def append(self, events: Sequence[Event | DatasetRecord]) -> None:
        start = time.perf_counter()
        try:
            await self.log.append(events)
        finally:
            self.metrics.append_seconds.observe(time.perf_counter() - start)
        self.metrics.stored(events)
        self.attributed([e for e in events if isinstance(e, Event)])

    async def read(self, group: str, max_events: int = 500, timeout_s: float = 1.0, *,
                   topics: str | None = None) -> list[Any]:
        return await self.log.read(group, max_events, timeout_s, topics=topics)

    async def commit(self, group: str) -> None:
        await self.log.commit(group)


def scraped(registry: CollectorRegistry, served: Collector, processes: int) -> CollectorRegistry:
    """What GET /metrics shows. One API process: its registry. Several (`serve --workers N`):
    each process's counters and histograms are in files (prometheus_client's multiprocess
    mode, which the CLI turns on for them) and every scrape sums all of them, so whichever
    process answers, the counts are the whole server's; the process's CPU and memory
    figures are left out then, since they would be one process's only."""
    registry.register(served)
    if processes == 1:
        return registry
    from prometheus_client.multiprocess import MultiProcessCollector

    every = CollectorRegistry()
    MultiProcessCollector(every)
    every.register(served)
    every.register(BUILD_INFO)
    return every


def make_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/metrics", summary="Prometheus metrics (text format; OpenMetrics if asked)")
    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept"))
        return Response(encode(registry), headers={"Content-Type": content_type})

    return router
