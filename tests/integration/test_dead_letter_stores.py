"""One suite for both dead-letter stores: a table of the embedded log, a Kafka topic per group."""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kernel.contract import Event, Undecodable, dead_letter
from stream.dead_letters import DeadLetters, KafkaDeadLetters, SqliteDeadLetters


@pytest.fixture(params=["embedded", "kafka"])
async def letters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeadLetters]:
    box: DeadLetters = SqliteDeadLetters(tmp_path / "events.db") if request.param == "embedded" \
        else KafkaDeadLetters(request.getfixturevalue("kafka_bootstrap"))
    await box.start()
    yield box
    await box.close()


def event(group: str, n: int) -> Event:
    return Event(event_id=f"e{n}", dataset_group=group, tracking_id="t", user_id="u", session_id="s",
                 event_type="click", item_id="i", sent_at=1e17, received_at=0.0)


async def test_dead_letters_are_kept_per_dataset_group_in_order(letters: DeadLetters, unique: str) -> None:
    other = unique + "x"
    await letters.put([dead_letter("archive", event(unique, n), ValueError(f"bad {n}"), at=float(n))
                       for n in range(3)])
    garbage = Undecodable(f"opz.{unique}.events", b"\xff", "no json")
    await letters.put([dead_letter("sessions", garbage, "x", 9.0),
                       dead_letter("archive", event(other, 7), "elsewhere", 9.0)])
    mine = await letters.list(unique)
    assert [(x.consumer, x.event_id, x.error) for x in mine] == [
        ("archive", "e0", "ValueError: bad 0"), ("archive", "e1", "ValueError: bad 1"),
        ("archive", "e2", "ValueError: bad 2"), ("sessions", None, "x")]
    assert mine[-1].record == "\\xff"
    assert [x.event_id for x in await letters.list(other)] == ["e7"]
    assert [x.event_id for x in await letters.list(unique, limit=2)] == ["e0", "e1"]
    assert await letters.list(unique + "none") == []


async def test_a_deleted_dataset_groups_dead_letters_go_with_it(letters: DeadLetters, unique: str) -> None:
    await letters.put([dead_letter("archive", event(unique, 1), "bad", 1.0),
                       dead_letter("archive", event(unique + "kept", 2), "bad", 1.0)])
    await letters.erase(unique)
    assert await letters.list(unique) == []
    assert [x.event_id for x in await letters.list(unique + "kept")] == ["e2"]
    await letters.put([dead_letter("sessions", event(unique, 3), "again", 2.0)])  # the group, created again
    assert [x.event_id for x in await letters.list(unique)] == ["e3"]
