"""`personalize stream worker`: one Faust worker process (run N of them, partitioned by user)."""
from __future__ import annotations

import asyncio
import logging
import signal

from stream.agents import TOPIC_SCAN_S, event_topics, register_agents
from stream.app import make_faust_app
from stream.archive import Archive
from stream.session import limits_from
from stream.settings import Settings
from stream.store import open_session_store

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set); state goes to the SessionStore."""
    assert settings.kafka_bootstrap_servers and settings.redis_url, \
        "stream workers run in distributed mode: set OPZ_KAFKA_BOOTSTRAP_SERVERS and OPZ_REDIS_URL"
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bootstrap = settings.kafka_bootstrap_servers
    store = open_session_store(settings)
    await store.start()
    # Faust needs at least one topic to subscribe to: wait for the first dataset group's events
    while not (topics := await event_topics(bootstrap)):
        log.info("no events topic yet (no event tracker has received events); waiting")
        try:
            await asyncio.wait_for(stop.wait(), TOPIC_SCAN_S)
            await store.close()
            return
        except TimeoutError:
            pass
    archive = Archive(settings.data_dir / "archive")
    await archive.start()
    app = make_faust_app(settings)
    register_agents(app, topics=topics, store=store, archive=archive,
                    limits=limits_from(settings), bootstrap=bootstrap)
    await app.start()
    log.info("stream worker started (app %s, brokers %s)", settings.stream_app_id,
             settings.kafka_bootstrap_servers)
    try:
        await stop.wait()
    finally:
        await app.stop()
        await archive.close()
        await store.close()
