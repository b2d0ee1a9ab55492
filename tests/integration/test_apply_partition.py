"""Exactly-once session state per Kafka partition: skip what was applied, rebuild what was lost."""
from __future__ import annotations

from kernel.contract import Event
from stream.applier import apply_partition
from stream.partition_states import PartitionStates
from stream.session import Limits
from stream.store import SessionStore

LOG = [(o, Event(event_id=f"e{o}", dataset_group="g", tracking_id="t", user_id=f"u{o % 3}",
                 session_id="s", event_type="click", item_id=f"i{o}", sent_at=float(o),
                 received_at=0.0)) for o in range(30)]


def replayer(store: SessionStore, calls: list[tuple[int | None, int]]):  # type: ignore[no-untyped-def]
    async def replay(start: int | None, until: int) -> None:
        calls.append((start, until))
        await apply_partition([r for r in LOG if (start or 0) <= r[0] < until], position="p",
                              store=store, limits=Limits(), replay=None)
    return replay


async def applied(store: SessionStore) -> list[int]:
    states, _ = await store.load([("g", "u0"), ("g", "u1"), ("g", "u2")])
    return [s.applied if s else 0 for s in states]


async def test_redelivered_records_are_skipped_by_offset(session_store: SessionStore) -> None:
    calls: list[tuple[int | None, int]] = []
    replay = replayer(session_store, calls)
    await apply_partition(LOG[:20], position="p", store=session_store, limits=Limits(), replay=replay)
    # a consumer restart redelivers 10..29: only 20..29 are new
    n = await apply_partition(LOG[10:], position="p", store=session_store, limits=Limits(), replay=replay)
    assert n == 10 and await applied(session_store) == [10, 10, 10]
    assert calls == []  # first batch started at offset 0: nothing to rebuild
    assert (await session_store.load([], ["p"]))[1] == [29]


async def test_a_store_that_lost_its_data_is_rebuilt_from_the_log(session_store: SessionStore) -> None:
    calls: list[tuple[int | None, int]] = []
    # the group already consumed 0..19 (committed in Kafka), but the store has nothing:
    n = await apply_partition(LOG[20:], position="p", store=session_store, limits=Limits(),
                              replay=replayer(session_store, calls))
    assert calls == [(None, 20)] and n == 10
    assert await applied(session_store) == [10, 10, 10]


async def test_a_gap_behind_the_stored_position_is_replayed(session_store: SessionStore) -> None:
    calls: list[tuple[int | None, int]] = []
    replay = replayer(session_store, calls)
    await apply_partition(LOG[:5], position="p", store=session_store, limits=Limits(), replay=replay)
    await apply_partition(LOG[12:], position="p", store=session_store, limits=Limits(), replay=replay)
    assert calls == [(5, 12)] and await applied(session_store) == [10, 10, 10]


class Overtaken:
    """A store whose first save finds that another worker (the partition's new owner in a
    rebalance) applied part of the same batch since this one loaded."""

    def __init__(self, store: SessionStore, other: list[tuple[int, Event]]) -> None:
        self.store, self.other = store, other

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)

    async def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        if self.other:
            other, self.other = self.other, []
            await apply_partition(other, position="p", store=self.store, limits=Limits(), replay=None)
        await self.store.save(*args, **kwargs)


async def test_two_owners_of_a_partition_apply_each_event_once(session_store: SessionStore) -> None:
    racing = Overtaken(session_store, LOG[:15])
    n = await apply_partition(LOG[:20], position="p", store=racing, limits=Limits(), replay=None)  # type: ignore[arg-type]
    assert n == 5  # its save was refused, so it started over from offset 15
    assert await applied(session_store) == [7, 7, 6]
    assert sum((await session_store.counter("g", "popularity", 100)).values()) == 20


class Reads:
    """A store that counts the users' states it is asked to read."""

    def __init__(self, store: SessionStore) -> None:
        self.store, self.users = store, 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.store, name)

    async def load(self, keys, positions=()):  # type: ignore[no-untyped-def]
        self.users += len(keys)
        return await self.store.load(keys, positions)


async def by_worker(records: list[tuple[int, Event]], store: SessionStore | Reads,
                    kept: PartitionStates | None) -> int:
    """A stream worker's batch of partition "p": it keeps what it stored in `kept`."""
    return await apply_partition(records, position="p", store=store, limits=Limits(), replay=None,  # type: ignore[arg-type]
                                 kept=kept)


async def test_a_worker_reads_only_the_users_it_has_not_kept(session_store: SessionStore) -> None:
    reads, kept = Reads(session_store), PartitionStates()
    await by_worker(LOG[:10], reads, kept)
    first = reads.users  # the 3 users, and the anonymous session they may have come from
    assert await by_worker(LOG[10:], reads, kept) == 20
    assert reads.users == first  # the second batch read positions only
    assert await applied(session_store) == [10, 10, 10]


async def test_what_a_worker_kept_gives_way_to_another_owners_writes(session_store: SessionStore) -> None:
    kept = PartitionStates()
    await by_worker(LOG[:10], session_store, kept)
    await by_worker(LOG[10:20], session_store, None)  # a rebalance: another worker, then it comes back
    assert await by_worker(LOG[20:], session_store, kept) == 10
    assert await applied(session_store) == [10, 10, 10]
    states, _ = await session_store.load([("g", "u0")])
    assert [i.item for i in states[0].history] == [f"i{o}" for o in range(0, 30, 3)]  # nothing lost


async def test_an_erasure_drops_what_a_worker_kept(session_store: SessionStore) -> None:
    kept = PartitionStates()
    await by_worker(LOG[:10], session_store, kept)
    assert await session_store.erase("g", ["u0"]) == {"u0"}  # a data deletion job
    await by_worker(LOG[10:], session_store, kept)
    states, _ = await session_store.load([("g", "u0")])
    assert [i.item for i in states[0].history] == [f"i{o}" for o in range(12, 30, 3)]  # none from before
