"""Readiness names each dependency that failed or was too slow to answer, and only those."""
from __future__ import annotations

import asyncio

from serving.app import unavailable


async def test_what_failed_or_hung_is_named_and_what_answered_is_not() -> None:
    async def answers() -> None:
        return None

    async def refuses() -> None:
        raise ConnectionError("redis://secret-host:6379 refused")

    async def hangs() -> None:
        await asyncio.sleep(10)

    down = await unavailable({"event log": answers, "session store": refuses, "control plane": hangs},
                             timeout_s=0.05)
    assert down == ["session store", "control plane"]
    assert await unavailable({"event log": answers}) == []
