"""One suite for every ShownLists: the process's memory (embedded) and Redis (real server)."""
from __future__ import annotations

import asyncio

from stream.shown import ShownLists
from stream.stores import Stores


async def test_recommendations_shown_are_recalled_until_they_expire(stores: Stores) -> None:
    shown: ShownLists = stores.shown
    await shown.remember("g", "RID-1", ["a", "b", "c"], ttl_s=60)
    await shown.remember("g", "RID-2", ["x"], ttl_s=0.05)
    assert await shown.recall("g", ["RID-1", "RID-2", "RID-unknown"]) == [["a", "b", "c"], ["x"], None]
    assert await shown.recall("h", ["RID-1"]) == [None]  # another dataset group's
    await asyncio.sleep(0.2)
    assert await shown.recall("g", ["RID-2", "RID-1"]) == [None, ["a", "b", "c"]]
    assert await shown.recall("g", []) == []


async def test_erasing_a_dataset_group_forgets_only_what_it_showed(stores: Stores) -> None:
    for group in ("g", "g_2", "g-x"):  # names one glob pattern of "g" would also match
        await stores.shown.remember(group, "RID-1", [group], ttl_s=60)
    await stores.shown.erase_group("g")
    assert [await stores.shown.recall(g, ["RID-1"]) for g in ("g", "g_2", "g-x")] == [
        [None], [["g_2"]], [["g-x"]]]
