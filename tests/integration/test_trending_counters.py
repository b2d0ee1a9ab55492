"""Trending-Now's bucket counters in every SessionStore: written with the events' batch, read
back several at once, and gone once no evaluation can read them (SQLite: not stored, then swept;
Redis: EXPIREAT on the key, set in the same script)."""
from __future__ import annotations

import time

from kernel.contract import Event
from kernel.trending import bucket_expires_at, bucket_of
from stream.counters import bucket_name, increments
from stream.store import RedisSessionStore, SqliteSessionStore
from stream.stores import Stores


def ev(item: str, t: float) -> Event:
    return Event(event_id=f"{item}{t}", dataset_group="g", tracking_id="t", user_id="u",
                 session_id="s", event_type="click", item_id=item, sent_at=t, received_at=0)


async def test_bucket_counters_add_up_and_are_read_together(stores: Stores) -> None:
    now = time.time()
    this, last = bucket_of(now), bucket_of(now) - 1
    await stores.sessions.save({}, None, increments([ev("a", now), ev("a", now), ev("b", now - 1800)]))
    await stores.sessions.save({}, None, increments([ev("a", now)]))
    names = [bucket_name(i) for i in (last, this, this + 1)]
    assert await stores.counters.read_whole("g", names) == [{"b": 1.0}, {"a": 3.0}, {}]
    assert await stores.counters.read_whole("other", names) == [{}, {}, {}]
    assert await stores.counters.read_whole("g", []) == []


async def test_bucket_counters_go_when_no_window_can_read_them(stores: Stores) -> None:
    now = time.time()
    old, recent = bucket_of(now - 4 * 86_400), bucket_of(now)
    await stores.sessions.save({}, None, increments([ev("a", now - 4 * 86_400), ev("a", now)]))
    names = [bucket_name(old), bucket_name(recent)]
    assert await stores.counters.read_whole("g", names) == [{}, {"a": 1.0}]
    assert await stores.counters.counter("g", "popularity", 5) == {"a": 2.0}  # other counters stay
    sessions = stores.sessions
    if isinstance(sessions, RedisSessionStore):
        key = sessions.counter_key("g", bucket_name(recent))
        assert await sessions.redis.client.expiretime(key) == bucket_expires_at(recent)
        assert await sessions.redis.client.ttl(sessions.counter_key("g", "popularity")) == -1
    else:
        assert isinstance(sessions, SqliteSessionStore)
        sessions.clock = lambda: bucket_expires_at(recent) + 1  # three days on: the next save sweeps
        await sessions.save({}, None, increments([ev("b", bucket_expires_at(recent))]))
        assert await stores.counters.read_whole("g", names) == [{}, {}]
        assert await stores.counters.counter("g", "popularity", 5) == {"a": 2.0, "b": 1.0}
