"""One suite for every SessionStore: SQLite (embedded) and Redis (real server).

States, the log positions saved with them and the counters the same saves increment."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from kernel.contract import UnknownVersion
from stream.session import Interaction, SessionState
from stream.store import PositionMoved, RedisSessionStore, SessionStore, SqliteSessionStore
from stream.stores import Stores

STATE = SessionState(session_id="s1", session_start=1.0, sessions=2, last_ts=9.0, applied=3,
                     history=(Interaction(item="a", type="click", ts=1.0),
                              Interaction(item="b", type="buy", value=9.5, ts=9.0)),
                     session_items=("a", "b"), event_ids=("e1", "e2", "e3"),
                     model="arn:aws:personalize:us-east-1:0:solution/x/v1", h=(0.25, -1.5))


async def states(store: SessionStore, *keys: tuple[str, str]) -> list[SessionState | None]:
    return (await store.load(keys))[0]


async def test_missing_users_have_no_state(session_store: SessionStore) -> None:
    assert await session_store.load([("g", "nobody"), ("g", "ghost")], ["p"]) == ([None, None], [None])


async def test_states_round_trip_and_dataset_groups_are_isolated(session_store: SessionStore) -> None:
    other = SessionState(session_id="x")
    await session_store.save({("g1", "u"): STATE, ("g2", "u"): other})
    assert await states(session_store, ("g1", "u"), ("g2", "u"), ("g3", "u")) == [STATE, other, None]
    await session_store.save({("g1", "u"): other})
    assert await states(session_store, ("g1", "u")) == [other]


async def test_positions_are_saved_with_the_states_they_produced(session_store: SessionStore) -> None:
    await session_store.save({("g", "u"): STATE}, {"opz.g.events:0": 41, "opz.g.events:3": 7})
    got = await session_store.load([("g", "u")], ["opz.g.events:3", "opz.g.events:0", "opz.g.events:1"])
    assert got == ([STATE], [7, 41, None])
    await session_store.save({}, {"opz.g.events:0": 42})
    assert (await session_store.load([], ["opz.g.events:0"]))[1] == [42]


async def test_state_survives_reopening_the_store(make_stores: Callable[[], Stores]) -> None:
    stores = make_stores()
    await stores.start()
    await stores.sessions.save({("g", "u"): STATE}, {"p": 3})
    await stores.close()
    stores = make_stores()
    await stores.start()
    try:
        assert await stores.sessions.load([("g", "u")], ["p"]) == ([STATE], [3])
    finally:
        await stores.close()


async def test_a_record_of_an_unknown_layout_version_is_refused(session_store: SessionStore) -> None:
    await session_store.save({("g", "u"): STATE})
    if isinstance(session_store, RedisSessionStore):
        await session_store.redis.client.hset(session_store.key("g", "u"), "v", 99)
    else:
        assert isinstance(session_store, SqliteSessionStore)
        session_store._db.execute("UPDATE sessions SET v = 99")  # type: ignore[union-attr]
    with pytest.raises(UnknownVersion, match="99"):
        await session_store.load([("g", "u")])


async def test_counters_add_up_and_rank(stores: Stores) -> None:
    sessions, counters = stores.sessions, stores.counters
    await sessions.save({}, None, {("g", "popularity"): {"a": 1.0, "b": 2.0}})
    await sessions.save({("g", "u"): STATE}, {"p": 1},
                        {("g", "popularity"): {"a": 2.5, "c": 1.0}, ("h", "popularity"): {"z": 9.0}})
    assert await counters.counter("g", "popularity", 10) == {"a": 3.5, "b": 2.0, "c": 1.0}
    assert await counters.counter("g", "popularity", 1) == {"a": 3.5}
    assert await counters.counter("g", "nothing", 5) == {}


async def test_erasing_users_deletes_their_states_only(session_store: SessionStore) -> None:
    await session_store.save({("g", "u1"): STATE, ("g", "session:s9"): STATE, ("g", "u2"): STATE,
                              ("h", "u1"): STATE})
    assert await session_store.erase("g", ["u1", "session:s9", "nobody"]) == {"u1", "session:s9"}
    assert await states(session_store, ("g", "u1"), ("g", "session:s9"), ("g", "u2"), ("h", "u1")) == [
        None, None, STATE, STATE]
    assert await session_store.erase("g", []) == set()


async def test_erasing_a_dataset_group_leaves_nothing_of_it(stores: Stores) -> None:
    """Positions of its topics must go too: a dataset group created again with the same name
    starts its topics at offset 0, which an old position would skip."""
    for group in ("g", "g_2", "g-x"):  # names one LIKE or glob pattern of "g" would also match
        positions = {f"opz.{group}.events:0": 41, f"opz.{group}.users:1": 2}
        await stores.sessions.save({(group, "u"): STATE}, positions, {(group, "popularity"): {"a": 1.0}})
    await stores.sessions.erase_group("g")
    positions = ["opz.g.events:0", "opz.g.users:1", "opz.g_2.events:0", "opz.g-x.users:1"]
    assert await stores.sessions.load([("g", "u"), ("g_2", "u"), ("g-x", "u")], positions) == (
        [None, STATE, STATE], [None, None, 41, 2])
    assert await stores.counters.counter("g", "popularity", 5) == {}
    assert await stores.counters.counter("g_2", "popularity", 5) == {"a": 1.0}


async def test_a_save_expecting_a_moved_position_writes_nothing(stores: Stores) -> None:
    session_store = stores.sessions
    await session_store.save({}, {"p": 9})
    with pytest.raises(PositionMoved):  # another writer applied up to 9 after we loaded 4
        await session_store.save({("g", "u"): STATE}, {"p": 12}, {("g", "popularity"): {"i": 1.0}},
                                 expect={"p": 4})
    with pytest.raises(PositionMoved):
        await session_store.save({("g", "u"): STATE}, {"q": 3}, expect={"q": 1})  # q is absent
    assert await session_store.load([("g", "u")], ["p", "q"]) == ([None], [9, None])
    assert await stores.counters.counter("g", "popularity", 10) == {}
    await session_store.save({("g", "u"): STATE}, {"p": 12, "q": 3}, expect={"p": 9, "q": None})
    assert await session_store.load([("g", "u")], ["p", "q"]) == ([STATE], [12, 3])
