"""One suite for every SessionStore: SQLite (embedded) and Redis (real server)."""
from __future__ import annotations

from collections.abc import Callable

import pytest

from kernel.contract import UnknownVersion
from stream.session import Interaction, SessionState
from stream.store import PositionMoved, RedisSessionStore, SessionStore, SqliteSessionStore

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


async def test_state_survives_reopening_the_store(make_store: Callable[[], SessionStore]) -> None:
    store = make_store()
    await store.start()
    await store.save({("g", "u"): STATE}, {"p": 3})
    await store.close()
    store = make_store()
    await store.start()
    try:
        assert await store.load([("g", "u")], ["p"]) == ([STATE], [3])
    finally:
        await store.close()


async def test_a_record_of_an_unknown_layout_version_is_refused(session_store: SessionStore) -> None:
    await session_store.save({("g", "u"): STATE})
    if isinstance(session_store, RedisSessionStore):
        await session_store._redis.hset(session_store.key("g", "u"), "v", 99)  # type: ignore[union-attr]
    else:
        assert isinstance(session_store, SqliteSessionStore)
        session_store._db.execute("UPDATE sessions SET v = 99")  # type: ignore[union-attr]
    with pytest.raises(UnknownVersion, match="99"):
        await session_store.load([("g", "u")])


async def test_counters_add_up_and_rank(session_store: SessionStore) -> None:
    await session_store.save({}, None, {("g", "popularity"): {"a": 1.0, "b": 2.0}})
    await session_store.save({("g", "u"): STATE}, {"p": 1},
                             {("g", "popularity"): {"a": 2.5, "c": 1.0}, ("h", "popularity"): {"z": 9.0}})
    assert await session_store.counter("g", "popularity", 10) == {"a": 3.5, "b": 2.0, "c": 1.0}
    assert await session_store.counter("g", "popularity", 1) == {"a": 3.5}
    assert await session_store.counter("g", "nothing", 5) == {}


async def test_recommendations_shown_are_recalled_until_they_expire(session_store: SessionStore) -> None:
    import asyncio
    await session_store.remember("g", "RID-1", ["a", "b", "c"], ttl_s=60)
    await session_store.remember("g", "RID-2", ["x"], ttl_s=0.05)
    assert await session_store.recall("g", ["RID-1", "RID-2", "RID-unknown"]) == [
        ["a", "b", "c"], ["x"], None]
    assert await session_store.recall("h", ["RID-1"]) == [None]  # another dataset group's
    await asyncio.sleep(0.2)
    assert await session_store.recall("g", ["RID-2", "RID-1"]) == [None, ["a", "b", "c"]]
    assert await session_store.recall("g", []) == []


async def test_erasing_users_deletes_their_states_only(session_store: SessionStore) -> None:
    await session_store.save({("g", "u1"): STATE, ("g", "session:s9"): STATE, ("g", "u2"): STATE,
                              ("h", "u1"): STATE})
    assert await session_store.erase("g", ["u1", "session:s9", "nobody"]) == {"u1", "session:s9"}
    assert await states(session_store, ("g", "u1"), ("g", "session:s9"), ("g", "u2"), ("h", "u1")) == [
        None, None, STATE, STATE]
    assert await session_store.erase("g", []) == set()


async def test_erasing_a_dataset_group_leaves_nothing_of_it(session_store: SessionStore) -> None:
    """Positions of its topics must go too: a dataset group created again with the same name
    starts its topics at offset 0, which an old position would skip."""
    for group in ("g", "g_2", "g-x"):  # names one LIKE or glob pattern of "g" would also match
        positions = {f"opz.{group}.events:0": 41, f"opz.{group}.users:1": 2}
        await session_store.save({(group, "u"): STATE}, positions, {(group, "popularity"): {"a": 1.0}})
        await session_store.remember(group, "RID-1", ["a"], ttl_s=60)
        await session_store.publish_live_model(group, "m", "artifacts/s/v", 1.0)
    await session_store.erase_group("g")
    positions = ["opz.g.events:0", "opz.g.users:1", "opz.g_2.events:0", "opz.g-x.users:1"]
    assert await session_store.load([("g", "u"), ("g_2", "u"), ("g-x", "u")], positions) == (
        [None, STATE, STATE], [None, None, 41, 2])
    assert await session_store.counter("g", "popularity", 5) == {}
    assert await session_store.counter("g_2", "popularity", 5) == {"a": 1.0}
    assert await session_store.recall("g", ["RID-1"]) == [None]
    assert await session_store.recall("g-x", ["RID-1"]) == [["a"]]
    assert sorted(await session_store.live_models()) == ["g-x", "g_2"]


async def test_a_store_opened_to_erase_reaches_what_the_serving_one_keeps(
        make_store: Callable[[], SessionStore]) -> None:
    """Embedded, recommendations and live models are in memory: the control plane erases a
    dataset group through a store of its own."""
    serving, eraser = make_store(), make_store()
    await serving.start()
    await eraser.start()
    try:
        await serving.remember("g", "RID-1", ["a"], ttl_s=60)
        await serving.publish_live_model("g", "m", "artifacts/s/v", 1.0)
        await eraser.erase_group("g")
        assert await serving.recall("g", ["RID-1"]) == [None]
        assert await serving.live_models() == {}
    finally:
        await eraser.close()
        await serving.close()


async def test_a_save_expecting_a_moved_position_writes_nothing(session_store: SessionStore) -> None:
    await session_store.save({}, {"p": 9})
    with pytest.raises(PositionMoved):  # another writer applied up to 9 after we loaded 4
        await session_store.save({("g", "u"): STATE}, {"p": 12}, {("g", "popularity"): {"i": 1.0}},
                                 expect={"p": 4})
    with pytest.raises(PositionMoved):
        await session_store.save({("g", "u"): STATE}, {"q": 3}, expect={"q": 1})  # q is absent
    assert await session_store.load([("g", "u")], ["p", "q"]) == ([None], [9, None])
    assert await session_store.counter("g", "popularity", 10) == {}
    await session_store.save({("g", "u"): STATE}, {"p": 12, "q": 3}, expect={"p": 9, "q": None})
    assert await session_store.load([("g", "u")], ["p", "q"]) == ([STATE], [12, 3])


async def test_many_requests_at_once_each_get_their_own_answers(session_store: SessionStore) -> None:
    """As GetRecommendations under load: a user's (and its session's) state, then the items shown."""
    import asyncio
    users = [f"u{n}" for n in range(60)]
    await session_store.save({("g", u): SessionState(session_id=u) for u in users[::2]})

    async def request(user: str) -> list[SessionState | None]:
        got = await states(session_store, ("g", user), ("g", f"anon-{user}"))
        await session_store.remember("g", f"RID-{user}", [user, "x"], ttl_s=60)
        return got

    answers = await asyncio.gather(*(request(u) for u in users))
    assert answers == [[SessionState(session_id=u) if n % 2 == 0 else None, None]
                       for n, u in enumerate(users)]
    assert await session_store.recall("g", [f"RID-{u}" for u in users]) == [[u, "x"] for u in users]


async def test_an_error_reply_fails_only_the_request_it_belongs_to(redis_url: str, unique: str) -> None:
    """Requests that share a pipeline (Redis) do not share each other's errors."""
    import asyncio

    from redis.exceptions import ResponseError
    store = RedisSessionStore(redis_url, prefix=unique)
    await store.start()
    try:
        await store.save({("g", "ok"): STATE})
        await store._redis.set(store.key("g", "broken"), "not a hash")  # type: ignore[union-attr]
        ok, broken, shown = await asyncio.gather(
            states(store, ("g", "ok")), states(store, ("g", "broken")),
            store.remember("g", "RID-1", ["a"], ttl_s=60), return_exceptions=True)
        assert ok == [STATE] and shown is None
        assert isinstance(broken, ResponseError) and "WRONGTYPE" in str(broken)
    finally:
        await store.close()


async def test_a_started_store_is_ready(session_store: SessionStore) -> None:
    await session_store.ready()  # what GET /ready asks (a Redis PING; SQLite: its file is open)
