"""`create_app(settings)`: the one FastAPI app (control plane, events, health).

The lifespan opens the two seams picked by settings (event log, session store). In
embedded mode it also runs the session applier in-process; distributed, the Faust
workers (`personalize stream worker`) do that.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from serving import control_api, events_api
from serving.errors import install_error_handlers
from serving.resources import ResourceStore
from stream.applier import run_session_loop
from stream.log import open_event_log
from stream.session import limits_from
from stream.settings import Settings
from stream.store import open_session_store

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    resources = ResourceStore(settings.data_dir / "control.db")
    event_log = open_event_log(settings, client_id="opz-api")
    store = open_session_store(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await event_log.start()
        await store.start()
        stop = asyncio.Event()
        applier = None
        if settings.embedded:
            applier = asyncio.create_task(
                run_session_loop(event_log, store, limits_from(settings), stop))
        log.info("openpersonalize ready (%s mode, data dir %s)",
                 "embedded" if settings.embedded else "distributed", settings.data_dir)
        try:
            yield
        finally:
            stop.set()
            if applier is not None:
                await applier
            await event_log.close()
            await store.close()
            resources.close()

    app = FastAPI(title="openpersonalize", version="0.1.0", lifespan=lifespan,
                  description="Amazon Personalize's API, self-hosted and real-time.")
    install_error_handlers(app)
    app.state.settings, app.state.event_log, app.state.store = settings, event_log, store

    @app.get("/health", tags=["ops"], summary="Liveness and mode")
    async def health() -> dict[str, str]:
        return {"status": "ok", "mode": "embedded" if settings.embedded else "distributed"}

    ctx = control_api.Ctx(settings=settings, resources=resources)
    app.include_router(control_api.make_router(ctx))
    app.include_router(events_api.make_router(event_log, events_api.Trackers(resources)))
    return app
