"""Deleting data where the stream keeps it: the log, the archive, the datasets, the session store."""
from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kernel.archive import Archive, erase_events, read_events
from kernel.contract import DatasetRecord, Event, events_topic, events_topic_pattern, records_topic
from kernel.datasets import DatasetStore
from kernel.settings import Settings
from stream.erasure import erase_group, erase_users
from stream.log import KafkaEventLog, SqliteEventLog
from stream.session import SessionState
from stream.stores import open_stores


def ev(i: int, user: str | None, session: str, group: str = "g") -> Event:
    return Event(event_id=f"e{i}", dataset_group=group, tracking_id="t", user_id=user, session_id=session,
                 event_type="click", item_id=f"i{i}", sent_at=1_700_000_000.0 + i, received_at=0.0)


def record(user: str, group: str = "g") -> DatasetRecord:
    return DatasetRecord(record_id=f"r-{user}", dataset_group=group, dataset_type="USERS", id=user,
                         fields={"AGE": 30}, received_at=0.0)


async def archived(root: Path, events: list[Event]) -> None:
    archive = Archive(root)
    await archive.start()
    try:
        await archive.add(events)
    finally:
        await archive.close()


async def test_erasing_users_from_the_archive_takes_the_anonymous_events_stitched_to_them(
        tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await archived(root, [
        ev(0, None, "s1"), ev(1, "alice", "s1"),  # alice signed in on s1: e0 is hers in training
        ev(2, "bob", "s2"), ev(3, None, "s3"),  # s3: a visitor who never signed in
        ev(4, None, "s4"), ev(5, "alice", "s5"), ev(0, "alice", "s1", group="h")])
    erased = erase_events(root, "g", ["alice", "s3", "nobody"])
    assert erased.users == {"alice", "s3"} and erased.sessions == {"s1", "s5"}
    assert [e.event_id for e in read_events(root, "g")] == ["e2", "e4"]
    assert [e.event_id for e in read_events(root, "h")] == ["e0"]  # another dataset group's
    erase_events(root, "g")
    assert read_events(root, "g") == []
    assert erase_events(root, "never-archived", ["alice"]).users == set()


async def test_erased_events_leave_no_bytes_in_the_archive_file(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    await archived(root, [ev(0, "secret-user-id", "s"), ev(1, "kept", "s2")])
    erase_events(root, "g", ["secret-user-id"])
    raw = b"".join(p.read_bytes() for p in root.iterdir())
    assert b"secret-user-id" not in raw and b"kept" in raw


def test_erasing_users_rewrites_the_dataset_parts_holding_them(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / "datasets")
    for n, users in enumerate((["a", "b", "a"], ["c"])):
        part = store.new_part("g", "INTERACTIONS")
        pq.write_table(pa.table({"USER_ID": users, "ITEM_ID": [f"i{k}" for k in range(len(users))]}), part)
        store.commit("g", "INTERACTIONS", f"job{n}", part, len(users), replace=False)
    untouched = store.manifest("g", "INTERACTIONS").parts[1]
    assert store.erase("g", "INTERACTIONS", "USER_ID", ["a", "z"]) == {"a"}
    assert store.read("g", "INTERACTIONS")["USER_ID"].to_pylist() == ["b", "c"]
    manifest = store.manifest("g", "INTERACTIONS")
    assert manifest.parts[1] == untouched and manifest.jobs == ["job0", "job1"]  # a re-run commits nothing
    assert len(list((tmp_path / "datasets" / "g" / "INTERACTIONS").glob("*.parquet"))) == 2
    store.put([record("b"), record("d")])
    assert store.erase("g", "USERS", "USER_ID", ["b", "c"]) == {"b"}
    assert store.read("g", "USERS")["USER_ID"].to_pylist() == ["d"]
    assert store.erase("g", "ITEMS", "USER_ID", ["b"]) == set()


async def test_the_embedded_log_erases_a_topic_or_some_keys_of_it(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "events.db", topic_pattern=events_topic_pattern())
    await log.start()
    try:
        await log.append([ev(0, "alice", "s1"), ev(1, None, "s1"), ev(2, "bob", "s2"), ev(3, "bob", "s", "h"),
                          record("alice")])
        assert await log.erase([events_topic("g"), records_topic("g", "USERS")], ["alice", "session:s1"]) == 3
        assert [e.event_id for e in await log.read("r", timeout_s=0.1)] == ["e2", "e3"]
        assert await log.erase([events_topic("h")]) == 1
        await log.append([ev(4, "carol", "s4", "h")])  # offsets go on: a consumer's position holds
        assert [e.event_id for e in await log.read("r", timeout_s=0.1)] == ["e4"]
    finally:
        await log.close()
    db = sqlite3.connect(tmp_path / "events.db")
    assert db.execute("SELECT count(*) FROM events").fetchone() == (2,)  # e2 and e4
    db.close()


async def test_kafka_topics_of_a_dataset_group_come_back_empty_with_our_settings(
        kafka_bootstrap: str, unique: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    log = KafkaEventLog(kafka_bootstrap, client_id=unique, partitions=3,
                        topic_pattern=events_topic_pattern(re.escape(unique)))
    await log.start()
    try:
        await log.append([ev(i, f"u{i}", "s", unique) for i in range(20)] + [record("u1", unique)])
        assert len(await read_until(log, "before", "e19")) == 20
        topics = [events_topic(unique), records_topic(unique, "USERS"), records_topic(unique, "ITEMS")]
        assert await log.recreate_topics(topics) == set(topics[:2])  # never had items: not created
        await log.append([ev(100, "u1", "s", unique)])  # this process held them as created
        assert [e.event_id for e in await read_until(log, "after", "e100")] == ["e100"]
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics[:2])}
            assert described == {topics[0]: 3, topics[1]: 3}
            assert topics[2] not in await admin.list_topics()
            await admin.delete_topics(topics[:2])
        finally:
            await admin.close()
    finally:
        await log.close()


async def read_until(log: KafkaEventLog, group: str, last: str) -> list[Event]:
    """What a new consumer group reads up to event `last`, and for a second after."""
    got: list[Event] = []
    async with asyncio.timeout(60):
        while last not in [e.event_id for e in got]:
            got += await log.read(group, timeout_s=0.5)
    return got + await log.read(group, timeout_s=1)


@pytest.fixture(params=["embedded", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Settings:
    if request.param == "embedded":
        return Settings(data_dir=tmp_path)
    # Kafka is named only because Redis needs it (one mode or the other); the log is not used here
    return Settings(data_dir=tmp_path, redis_url=request.getfixturevalue("redis_url"), redis_prefix=unique,
                    kafka_bootstrap_servers=request.getfixturevalue("kafka_bootstrap"))


async def test_erasing_users_takes_their_states_and_their_sessions_states(settings: Settings,
                                                                          unique: str) -> None:
    g, h = unique, f"{unique}-other"
    stores = open_stores(settings)
    store = stores.sessions
    await stores.start()
    try:
        await store.save({(g, "alice"): SessionState(session_id="s9"), (g, "session:s9"): SessionState(),
                          (g, "session:s1"): SessionState(), (g, "session:visitor"): SessionState(),
                          (g, "bob"): SessionState(), (h, "alice"): SessionState()})
        found = await erase_users(settings, g, ["alice", "visitor", "nobody"], sessions=["s1"])
        assert found == {"alice", "visitor"}
        keys = [(g, "alice"), (g, "session:s9"), (g, "session:s1"), (g, "session:visitor"),
                (g, "bob"), (h, "alice")]
        assert [s is not None for s in (await store.load(keys))[0]] == [False] * 4 + [True, True]
        await erase_group(settings, g, settle_s=0)
        assert [s is not None for s in (await store.load([(g, "bob"), (h, "alice")]))[0]] == [False, True]
    finally:
        await stores.close()
