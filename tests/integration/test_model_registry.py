"""One suite for every ModelRegistry: the process's memory (embedded) and Redis (real server)."""
from __future__ import annotations

from stream.stores import Stores


async def test_the_newest_version_published_is_what_a_group_serves(stores: Stores) -> None:
    registry = stores.models
    assert await registry.published() == {}
    await registry.publish("g", "v2", "artifacts/s/v2", 2.0)
    await registry.publish("g", "v1", "artifacts/s/v1", 1.0)  # a late publisher of an older version
    await registry.publish("h", "w1", "artifacts/t/w1", 1.0)
    assert await registry.published() == {"g": {"model": "v2", "artifact": "artifacts/s/v2", "created": 2.0},
                                           "h": {"model": "w1", "artifact": "artifacts/t/w1", "created": 1.0}}
    await registry.publish("g", "v3", "artifacts/s/v3", 3.0)
    assert (await registry.published())["g"]["model"] == "v3"


async def test_erasing_a_dataset_group_forgets_its_model(stores: Stores) -> None:
    for group in ("g", "g_2"):
        await stores.models.publish(group, "m", "artifacts/s/v", 1.0)
    await stores.models.erase_group("g")
    assert sorted(await stores.models.published()) == ["g_2"]
