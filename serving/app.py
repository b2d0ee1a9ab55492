"""`create_app(settings)`: the one FastAPI app (control plane, events, health).

The lifespan opens the seams picked by settings (event log, the stream's stores). In
embedded mode it also runs the stream's consumers in-process (stream/embedded.py);
distributed, the Faust workers (`personalize stream worker`) do that.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kernel.datasets import DatasetStore
from kernel.settings import Settings
from serving import console, events_api, metrics, runtime_api
from serving.access_keys import AccessKeys
from serving.attributed_events import AttributedEvents
from serving.auth import SignedCalls
from serving.console_feed import feed_of
from serving.control import batch, campaigns, dispatch, recommenders, segments, solutions
from serving.control import datasets as dataset_jobs
from serving.control.base import OPERATIONS, Ctx
from serving.control.ports import DatasetFiles, Trainer
from serving.control.store import Body, open_control_store
from serving.direct_routes import DirectRoutes
from serving.errors import install_error_handlers
from serving.hosts import ControlPlaneHosts, allowed_hosts
from serving.jobs import JobRunner, Progress, Work
from serving.limits import BodyLimits
from serving.models import Models
from serving.rate_limits import rate_limit
from serving.schedule import run_scheduler
from serving.work_metrics import WorkMetrics
from stream.embedded import run_embedded
from stream.log import open_event_log
from stream.metrics import MetricsServer, StreamMetrics, new_registry
from stream.stores import open_stores
from stream.supervision import ConsumerHealth

log = logging.getLogger(__name__)


READY_TIMEOUT_S = 2.0


async def unavailable(checks: Mapping[str, Callable[[], Awaitable[object]]],
                      timeout_s: float = READY_TIMEOUT_S) -> list[str]:
    """The names of the dependencies whose check failed or took longer than `timeout_s`."""
    async def failed(name: str, check: Callable[[], Awaitable[object]]) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                await check()
            return None
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readiness: %s unavailable (%s)", name, type(exc).__name__)
            return name
    return [name for name in await asyncio.gather(*(failed(n, c) for n, c in checks.items())) if name]


def origin_allowed(origin: str, allowed: Collection[str], extra: Collection[str] = ()) -> bool:
    """The data plane's one origin check: the server's OPZ_CORS_ORIGINS ("*": any origin),
    then `extra`, the origins allowed for this request only (public event trackers')."""
    return "*" in allowed or origin in allowed or origin in extra


class JudgedOrigins(CORSMiddleware):
    """Starlette's CORS for requests whose origin BrowserAccess already judged allowed: it
    echoes the origin (with `Vary: Origin`), as it does for a listed one."""

    def is_allowed_origin(self, origin: str) -> bool:
        return True


class BrowserAccess:
    """What web pages need to call the data plane (the JS SDK): CORS on the events and runtime
    routes only (the control plane stays unreachable from other origins), and PutEvents bodies
    sent by navigator.sendBeacon, whose Content-Type is text/plain, read as the JSON they are.
    `/events` also answers the origins of public event trackers (`public_origins()`); which
    tracker a page may use is checked with the request itself (serving/auth.py)."""

    PATHS = frozenset({"/events", "/action-interactions", "/recommendations", "/personalize-ranking",
                       "/action-recommendations"})

    def __init__(self, app: ASGIApp, origins: list[str],
                 public_origins: Callable[[], Collection[str]] = frozenset) -> None:
        self.app, self.origins, self.public_origins = app, origins, public_origins
        # only requests whose origin `origin_allowed` passed reach it
        self.cors: ASGIApp = (CORSMiddleware if "*" in origins else JudgedOrigins)(
            app, allow_origins=origins, allow_methods=["POST"], allow_headers=["*"],
            expose_headers=["x-amzn-ErrorType", "Retry-After"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.PATHS:
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/events" and scope["method"] == "POST":
            scope = {**scope, "headers": [
                (k, b"application/json") if k == b"content-type"
                and v.split(b";")[0].strip().lower() == b"text/plain" else (k, v)
                for k, v in scope["headers"]]}
        origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
        extra = self.public_origins() if scope["path"] == "/events" else ()
        allowed = origin is not None and origin_allowed(origin, self.origins, extra)
        await (self.cors if allowed else self.app)(scope, receive, send)


def training_work(ctx: Ctx, trainer: Trainer) -> dict[str, Work]:
    """The trainings a job runner with a trainer takes: solution versions and recommenders'."""
    def train(job: Body, progress: Progress) -> Body:
        return solutions.run_training(ctx, trainer, job, progress)
    return {"solution-version": train, recommenders.VERSION_KIND: train}


def create_app(settings: Settings, datasets: DatasetFiles,
               trainer: Trainer | None = None) -> FastAPI:
    """`datasets` and `trainer` do the work of import/export and training jobs (training's,
    given by the CLI). Without a trainer, `personalize trainer` processes train."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.file_roots:
        settings.roots[0].mkdir(exist_ok=True)
    resources = open_control_store(settings)
    keys = AccessKeys(resources, settings.keys_file)
    event_log = open_event_log(settings, client_id="opz-api")
    stores = open_stores(settings)
    api_metrics = metrics.ApiMetrics(new_registry())
    # embedded, the API process applies the events too: its /metrics shows the workers' metrics
    stream_metrics = StreamMetrics(api_metrics.registry) if settings.embedded else None
    health = ConsumerHealth(on_failure=stream_metrics.restarted if stream_metrics else lambda consumer: None)
    work_metrics = WorkMetrics(api_metrics.registry)
    ctx = Ctx(settings=settings, resources=resources, datasets=datasets,
                          models=Models(settings.data_dir, settings, work_metrics))
    work: dict[str, Work] = {
        "dataset-import-job": lambda job, progress: dataset_jobs.run_import(ctx, job, progress),
        "dataset-export-job": lambda job, progress: dataset_jobs.run_export(ctx, job, progress),
        "data-deletion-job": lambda job, progress: dataset_jobs.run_deletion(ctx, job, progress),
        "batch-inference-job": lambda job, progress: batch.run_batch_inference(ctx, job, progress),
        "batch-segment-job": lambda job, progress: segments.run_batch_segment(ctx, job, progress)}
    if trainer is not None:
        work |= training_work(ctx, trainer)
    jobs = JobRunner(resources, work, training_slots=settings.trainings_at_once, metrics=work_metrics)
    feed = feed_of(settings)  # the console's live view of the events
    ctx.wake_jobs = jobs.wake
    exposed = metrics.scraped(api_metrics.registry, metrics.ServedVersions(
        lambda: campaigns.served_versions(ctx)), settings.workers)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await event_log.start()
        await stores.start()
        stop = asyncio.Event()
        agents = (asyncio.create_task(run_embedded(settings, event_log, stores, stop, stream_metrics, health))
                  if stream_metrics is not None else None)
        job_runner = asyncio.create_task(jobs.run(stop))
        scheduler = asyncio.create_task(run_scheduler(ctx, settings.auto_update_seconds, stop)) \
            if trainer is not None else None
        log.info("openpersonalize ready (%s mode, data dir %s, control plane in %s)",
                 "embedded" if settings.embedded else "distributed", settings.data_dir,
                 "PostgreSQL" if settings.database_url else "control.db")
        if settings.auth == "off" or not keys.required():
            log.warning("calls are not signed: every caller is account %s (%s)", settings.account,
                        "OPZ_AUTH=off" if settings.auth == "off" else
                        "no access keys; `personalize keys create` makes one")
        try:
            yield
        finally:
            stop.set()
            await job_runner
            if scheduler is not None:
                await scheduler
            if agents is not None:
                await agents
            await feed.close()
            await event_log.close()
            await stores.close()
            resources.close()

    app = FastAPI(title="openpersonalize", version="0.1.0", lifespan=lifespan,
                  description="Amazon Personalize's API, self-hosted and real-time.")
    install_error_handlers(app)
    runtime = runtime_api.make_router(ctx, stores)
    # innermost: metrics and CORS see the hot routes' answers as any other
    app.add_middleware(DirectRoutes, routes=runtime.routes, paths=runtime_api.DIRECT_PATHS)
    trackers = events_api.Trackers(resources)
    scrape_token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.add_middleware(SignedCalls, keys=keys, open_account=settings.account, public_tracker=trackers.public,
                       enabled=settings.auth != "off", metrics_token=scrape_token)
    # outside all that reads a body, so it is capped (or refused) before anything reads it
    app.add_middleware(BodyLimits, control_bytes=settings.max_control_body_bytes,
                       data_bytes=settings.max_data_body_bytes)
    app.add_middleware(ControlPlaneHosts, allowed=allowed_hosts(settings.allowed_hosts, settings.host))
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    app.add_middleware(BrowserAccess, origins=origins, public_origins=trackers.public_origins)
    # added last = outermost: counts every answer, CORS preflights and errors included
    app.add_middleware(metrics.RequestMetrics, metrics=api_metrics, known=OPERATIONS,
                       access_log=settings.access_log)

    @app.get("/ready", tags=["ops"], summary="Readiness: the log, session store and control plane answer")
    async def ready() -> JSONResponse:
        """503 naming what did not answer within READY_TIMEOUT_S (never how: no address or
        error text): a load balancer sends PutEvents only where it can be stored."""
        down = await unavailable({"event log": event_log.ready, "session store": stores.ready,
                                  "control plane": lambda: asyncio.to_thread(resources.schema_version)})
        return JSONResponse({"ready": not down, "unavailable": down}, status_code=503 if down else 200)

    @app.get("/health", tags=["ops"], summary="Liveness, mode, and the consumers' failures")
    async def health_of() -> dict[str, Any]:
        """`degraded` (still 200: the process serves) while an in-process consumer failed in the
        last minute; each one's restarts and last error."""
        return {**health.report(), "mode": "embedded" if settings.embedded else "distributed"}

    app.include_router(dispatch.make_router(ctx))
    attributed = AttributedEvents(resources, DatasetStore.of(settings), api_metrics.registry)
    metered = metrics.MeteredEventLog(event_log, api_metrics, attributed.count)
    app.include_router(events_api.make_router(metered, trackers,
                                              events_api.Datasets(resources), stores.shown, settings.account,
                                              rate_limit(settings.tracker_requests_per_second)))
    app.include_router(metrics.make_router(exposed))
    app.include_router(runtime)
    app.include_router(console.make_router(ctx, stores.sessions, feed))
    return app


async def run_trainer(settings: Settings, datasets: DatasetFiles, trainer: Trainer,
                      schedule: bool, stop: asyncio.Event) -> None:
    """`personalize trainer`: train pending solution versions (and schedule automatic ones)
    next to API processes started with OPZ_TRAIN_IN_SERVER=false, on the same data dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)  # scheduler.lock, artifacts: even with PostgreSQL
    resources = open_control_store(settings)
    ctx = Ctx(settings=settings, resources=resources, datasets=datasets)
    registry = new_registry()
    work_metrics = WorkMetrics(registry)
    jobs = JobRunner(resources, training_work(ctx, trainer), training_slots=settings.trainings_at_once,
                     metrics=work_metrics)
    ctx.wake_jobs = jobs.wake
    server = None
    if settings.metrics_port:  # the trainings' metrics (no tenant data) and health, as a worker's
        server = MetricsServer(registry, settings.host, settings.metrics_port, jobs.store_contact.health)
        log.info("metrics and health on http://%s:%d/metrics, /health", settings.host, settings.metrics_port)
    log.info("trainer ready (data dir %s%s)", settings.data_dir, ", scheduling" if schedule else "")
    try:
        await asyncio.gather(jobs.run(stop), *([run_scheduler(ctx, settings.auto_update_seconds, stop)]
                                               if schedule else []))
    finally:
        resources.close()
        if server is not None:
            await server.close()
