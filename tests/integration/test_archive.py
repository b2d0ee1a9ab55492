"""The archive keeps each event once, in arrival order, by UTC day."""
from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from kernel.archive import Archive, Unarchivable, archive_row, read_events
from kernel.contract import Event


def ev(i: int, group: str = "g", ts: float = 1_700_000_000.0) -> Event:
    return Event(event_id=f"e{i}", dataset_group=group, tracking_id="t", user_id="u",
                 session_id="s", event_type="click", item_id=f"i{i}", sent_at=ts + i * 86_400,
                 received_at=0.0)


async def test_redelivered_events_are_archived_once_per_dataset_group(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive")
    await archive.start()
    try:
        assert (await archive.add([ev(0), ev(1), ev(0, "h")])).new == 3
        assert (await archive.add([ev(1), ev(2), ev(0)])).new == 1  # only e2 is new
        assert [e.event_id for e in await archive.read("g")] == ["e0", "e1", "e2"]
        assert [e.event_id for e in await archive.read("h")] == ["e0"]
        assert [e.event_id for e in await archive.read("g", since_day="2023-11-15")] == ["e1", "e2"]
        assert await archive.read("nobody") == []
    finally:
        await archive.close()


def test_a_trainer_reading_an_archive_being_created_finds_no_events(tmp_path: Path) -> None:
    """The archive agent creates a dataset group's file before its table: a retrain that
    reads in between sees an empty archive, not an error (a CI run's UPDATE failed on it)."""
    (tmp_path / "archive").mkdir()
    sqlite3.connect(tmp_path / "archive" / "g.db").execute("PRAGMA journal_mode=WAL").close()
    assert read_events(tmp_path / "archive", "g") == []


@pytest.mark.parametrize("sent_at", [1e17, 1e20, 1.7e12, -1.0, float("nan")])
def test_an_event_time_no_calendar_day_holds_has_no_archive_row(sent_at: float) -> None:
    bad = ev(0).model_copy(update={"sent_at": sent_at})
    with pytest.raises(Unarchivable, match="sentAt") as exc:
        archive_row(bad)
    assert exc.value.event is bad


async def test_the_archive_skips_an_event_it_cannot_hold_and_stores_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One sentAt of 1e17 in the log (accepted before the API checked it) stopped the archive
    consumer at every start (issue 16): it is left out, logged with its id, and the batch stored."""
    archive = Archive(tmp_path / "archive")
    await archive.start()
    poison = ev(1).model_copy(update={"event_id": "poison", "sent_at": 1e17})
    try:
        with caplog.at_level(logging.ERROR, logger="kernel.archive"):
            done = await archive.add([ev(0), poison, ev(2)])
        assert done.new == 2 and [r.event.event_id for r in done.refused] == ["poison"]
        assert [e.event_id for e in await archive.read("g")] == ["e0", "e2"]
        assert any(r.levelno == logging.ERROR and "poison" in r.getMessage() for r in caplog.records)
        assert (await archive.add([poison])).new == 0  # alone in its batch: nothing to store, no error
    finally:
        await archive.close()
