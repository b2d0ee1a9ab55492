"""One suite for every EventLog: SQLite (embedded) and Kafka (real broker)."""
from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable

import pytest

from kernel.contract import Event
from stream.log import EventLog, KafkaEventLog, LogUnavailable, SqliteEventLog

READ_TIMEOUT_S = 60  # first read on Kafka joins a group and may wait for topic metadata


def events(group: str, n: int, users: int = 7, start: int = 0) -> list[Event]:
    return [Event(event_id=f"e{i}", dataset_group=group, tracking_id="t", user_id=f"u{i % users}",
                  session_id="s", event_type="click", item_id=f"i{i}", sent_at=float(i),
                  received_at=float(i)) for i in range(start, start + n)]


async def read_n(log: EventLog, group: str, n: int) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(READ_TIMEOUT_S):
        while len(got) < n:
            got += await log.read(group, max_events=500, timeout_s=0.5)
    assert await log.read(group, timeout_s=0.5) == []  # and nothing more
    return got


async def test_every_appended_event_is_read_once_in_per_user_order(
        event_log: EventLog, unique: str) -> None:
    sent = events(unique, 300)
    for i in range(0, 300, 10):
        await event_log.append(sent[i:i + 10])
    got = await read_n(event_log, "readers", 300)
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in sent)
    per_user: dict[str, list[float]] = defaultdict(list)
    for e in got:
        per_user[e.user_key].append(e.sent_at)
    assert all(ts == sorted(ts) for ts in per_user.values())
    assert got[0] == next(e for e in sent if e.event_id == got[0].event_id)  # fields intact


async def test_uncommitted_events_are_redelivered_after_a_restart(
        make_log: Callable[[], EventLog], unique: str) -> None:
    log = make_log()
    await log.start()
    await log.append(events(unique, 10))
    assert len(await read_n(log, "g", 10)) == 10
    await log.commit("g")
    await log.append(events(unique, 5, start=10))
    assert len(await read_n(log, "g", 5)) == 5  # read, never committed: a crash here...
    await log.close()

    log = make_log()  # ...and the restarted reader sees exactly those 5 again
    await log.start()
    try:
        again = await read_n(log, "g", 5)
        assert sorted(e.event_id for e in again) == [f"e{i}" for i in range(10, 15)]
    finally:
        await log.close()


async def test_concurrent_appends_are_all_stored(event_log: EventLog, unique: str) -> None:
    sent = events(unique, 500)
    await asyncio.gather(*(event_log.append(sent[i:i + 10]) for i in range(0, 500, 10)))
    got = await read_n(event_log, "readers", 500)
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in sent)


async def test_groups_read_independently(event_log: EventLog, unique: str) -> None:
    await event_log.append(events(unique, 20))
    assert len(await read_n(event_log, "sessions", 20)) == 20
    await event_log.commit("sessions")
    assert len(await read_n(event_log, "analytics", 20)) == 20


@pytest.mark.parametrize("backend", ["embedded", "kafka"])
async def test_an_unreachable_log_refuses_to_start(backend: str, tmp_path, unique: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file").write_text("not a directory")
    log = (SqliteEventLog(tmp_path / "file" / "events.db") if backend == "embedded"
           else KafkaEventLog("127.0.0.1:1", client_id=unique, timeout_s=2))
    with pytest.raises(LogUnavailable):
        await log.start()


async def test_a_started_log_is_ready(event_log: EventLog) -> None:
    await event_log.ready()  # what GET /ready asks (Kafka: a metadata round trip)
