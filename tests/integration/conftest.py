"""Backends for the seam suites: every test here runs once per implementation."""
from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from kernel.contract import events_topic_pattern
from kernel.settings import Settings
from serving.control.store import ControlStore, open_control_store
from stream.log import EventLog, KafkaEventLog, SqliteEventLog
from stream.store import SessionStore
from stream.stores import Stores, redis_stores, sqlite_stores

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "kafka"])
def make_log(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Callable[[], EventLog]:
    """A factory: each call opens the same log anew (as a restarted process would)."""
    if request.param == "embedded":
        return lambda: SqliteEventLog(tmp_path / "events.db")
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    pattern = events_topic_pattern(re.escape(unique))  # only this test's topic
    return lambda: KafkaEventLog(bootstrap, client_id=unique, topic_pattern=pattern)


@pytest.fixture(params=["embedded", "redis"])
def make_stores(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Callable[[], Stores]:
    """A factory: each call opens the same stores anew (as another process, or a restart)."""
    if request.param == "embedded":
        return lambda: sqlite_stores(tmp_path / "sessions.db")
    url = request.getfixturevalue("redis_url")
    return lambda: redis_stores(url, unique)


@pytest.fixture
async def event_log(make_log: Callable[[], EventLog]) -> AsyncIterator[EventLog]:
    log = make_log()
    await log.start()
    yield log
    await log.close()


@pytest.fixture
async def stores(make_stores: Callable[[], Stores]) -> AsyncIterator[Stores]:
    opened = make_stores()
    await opened.start()
    yield opened
    await opened.close()


@pytest.fixture
def session_store(stores: Stores) -> SessionStore:
    return stores.sessions


@pytest.fixture(params=["embedded", "postgres"])
def control_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings that pick each control store: control.db in the data dir, or a PostgreSQL
    database of this test's own."""
    url = request.getfixturevalue("fresh_database") if request.param == "postgres" else None
    return Settings(data_dir=tmp_path / "data", database_url=url)


@pytest.fixture
def control_store(control_settings: Settings) -> Iterator[ControlStore]:
    store = open_control_store(control_settings)
    yield store
    store.close()
