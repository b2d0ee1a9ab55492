"""The stream's stores together (stream.stores): what one backend answers for all its ports."""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.exceptions import ResponseError

from stream.session import SessionState
from stream.stores import Stores, redis_stores

STATE = SessionState(session_id="s1")


async def test_erasing_a_dataset_group_leaves_nothing_of_it_in_any_store(stores: Stores) -> None:
    for group in ("g", "g_2"):
        await stores.sessions.save({(group, "u"): STATE}, {f"opz.{group}.events:0": 4},
                                   {(group, "popularity"): {"a": 1.0}})
        await stores.shown.remember(group, "RID-1", ["a"], ttl_s=60)
        await stores.models.publish(group, "m", "artifacts/s/v", 1.0)
    await stores.erase_group("g")
    found = await stores.sessions.load([("g", "u"), ("g_2", "u")], ["opz.g.events:0"])
    assert found == ([None, STATE], [None])
    assert await stores.counters.counter("g", "popularity", 5) == {}
    assert await stores.shown.recall("g", ["RID-1"]) == [None]
    assert await stores.shown.recall("g_2", ["RID-1"]) == [["a"]]
    assert sorted(await stores.models.published()) == ["g_2"]


async def test_stores_opened_to_erase_reach_what_the_serving_ones_keep(
        make_stores: Callable[[], Stores]) -> None:
    """Embedded, recommendations shown and the model registry are in memory: the control plane
    erases a dataset group through stores of its own."""
    serving, eraser = make_stores(), make_stores()
    await serving.start()
    await eraser.start()
    try:
        await serving.shown.remember("g", "RID-1", ["a"], ttl_s=60)
        await serving.models.publish("g", "m", "artifacts/s/v", 1.0)
        await eraser.erase_group("g")
        assert await serving.shown.recall("g", ["RID-1"]) == [None]
        assert await serving.models.published() == {}
    finally:
        await eraser.close()
        await serving.close()


async def test_many_requests_at_once_each_get_their_own_answers(stores: Stores) -> None:
    """As GetRecommendations under load: a user's (and its session's) state, then the items shown."""
    users = [f"u{n}" for n in range(60)]
    await stores.sessions.save({("g", u): SessionState(session_id=u) for u in users[::2]})

    async def request(user: str) -> list[SessionState | None]:
        got, _ = await stores.sessions.load([("g", user), ("g", f"anon-{user}")])
        await stores.shown.remember("g", f"RID-{user}", [user, "x"], ttl_s=60)
        return got

    answers = await asyncio.gather(*(request(u) for u in users))
    assert answers == [[SessionState(session_id=u) if n % 2 == 0 else None, None]
                       for n, u in enumerate(users)]
    assert await stores.shown.recall("g", [f"RID-{u}" for u in users]) == [[u, "x"] for u in users]


async def test_an_error_reply_fails_only_the_request_it_belongs_to(redis_url: str, unique: str) -> None:
    """Requests that share a pipeline (Redis) do not share each other's errors."""
    stores = redis_stores(redis_url, unique)
    await stores.start()
    try:
        await stores.sessions.save({("g", "ok"): STATE})
        await stores.backend.client.set(f"{unique}:session:g:broken", "not a hash")  # type: ignore[attr-defined]
        ok, broken, shown = await asyncio.gather(
            stores.sessions.load([("g", "ok")]), stores.sessions.load([("g", "broken")]),
            stores.shown.remember("g", "RID-1", ["a"], ttl_s=60), return_exceptions=True)
        assert ok == ([STATE], []) and shown is None
        assert isinstance(broken, ResponseError) and "WRONGTYPE" in str(broken)
    finally:
        await stores.close()


async def test_started_stores_are_ready(stores: Stores) -> None:
    await stores.ready()  # what GET /ready asks (a Redis PING; SQLite: its file is open)
