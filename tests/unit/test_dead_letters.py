"""What a consumer does with a record it cannot handle, and with a failure no record explains."""
from __future__ import annotations

import asyncio
import json

import pytest

from kernel.contract import Event, Undecodable, dead_letter, decode_or_undecodable, encode_event
from stream.dead_letters import handle_or_set_aside
from stream.supervision import ConsumerHealth, supervised


class Poison(ValueError):
    pass


async def test_a_batch_that_fails_is_handled_one_by_one_and_only_the_bad_record_is_set_aside() -> None:
    handled: list[int] = []

    async def handle(items: list[int]) -> None:
        if 3 in items:
            raise Poison("three")
        handled.extend(items)

    failed = await handle_or_set_aside([1, 2, 3, 4], handle, (OSError,))
    assert handled == [1, 2, 4]
    assert [(item, str(exc)) for item, exc in failed] == [(3, "three")]
    assert await handle_or_set_aside([5, 6], handle, (OSError,)) == [] and handled[-2:] == [5, 6]


async def test_a_store_that_is_down_is_not_the_records_fault() -> None:
    async def handle(items: list[int]) -> None:
        raise ConnectionError("redis restarting")

    with pytest.raises(ConnectionError):
        await handle_or_set_aside([1, 2], handle, (OSError,))


def test_a_record_that_does_not_decode_comes_as_undecodable_with_its_group() -> None:
    record = decode_or_undecodable("opz.shop.events", b'{"v": 2}')
    assert isinstance(record, Undecodable) and record.dataset_group == "shop"
    assert "version 2" in record.error
    letter = dead_letter("sessions", record, record.error, at=5.0)
    assert (letter.dataset_group, letter.event_id, letter.record) == ("shop", None, '{"v": 2}')
    good = Event(event_id="e1", dataset_group="shop", tracking_id="t", session_id="s", event_type="click",
                 sent_at=1.0, received_at=1.0)
    assert decode_or_undecodable("opz.shop.events", encode_event(good)) == good
    kept = dead_letter("archive", good, KeyError("x"), at=5.0)
    assert json.loads(kept.record)["event_id"] == "e1" and kept.error == "KeyError: 'x'"
    assert len(dead_letter("archive", good, "y" * 10_000, at=5.0).error) == 2000


async def test_a_consumer_that_fails_is_restarted_and_health_says_so() -> None:
    runs, stop, failures = [], asyncio.Event(), []
    health = ConsumerHealth(on_failure=failures.append)

    async def consumer() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"failure {len(runs)}")

    await asyncio.wait_for(supervised("sessions", consumer, stop, health, first_delay_s=0.01), 5)
    assert len(runs) == 3 and failures == ["sessions", "sessions"]
    report = health.report()
    assert report["status"] == "degraded"
    assert report["consumers"]["sessions"]["restarts"] == 2
    assert report["consumers"]["sessions"]["lastError"] == "RuntimeError: failure 2"
    assert health.report(now=health.failures["sessions"].at + 61)["status"] == "ok"
    assert ConsumerHealth().report() == {"status": "ok"}


async def test_a_stopped_consumer_is_not_restarted() -> None:
    stop = asyncio.Event()
    stop.set()
    calls: list[int] = []

    async def consumer() -> None:
        calls.append(1)

    await supervised("archive", consumer, stop, ConsumerHealth())
    assert calls == []
