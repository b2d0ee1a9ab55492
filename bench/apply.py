#!/usr/bin/env python3
"""bench/apply: the stream worker's session path alone (stream/applier.py's apply_partition
against Redis), with and without the states it stored kept in memory (stream/partition_states.py).

    .venv/bin/python bench/apply.py [--users 1000] [--batches 30] [--history 200]

One partition of --users users, each with a full history of --history events first (the
longest a state keeps: Limits.max_history); then --batches batches of 1,000 events, every
user once per batch, applied as the Faust session agent applies them, timed (this process's
CPU and wall time). The baseline reads every user's state from Redis each batch, as the worker
did before; the rows alternate. Redis on this machine: the one scripts/services.py started
(OPZ_TEST_REDIS_URL, as the tests take it), else one of its own. Prints a table with the load
average.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]
from services import RedisServer  # noqa: E402

from kernel.contract import Event  # noqa: E402
from stream.applier import apply_partition  # noqa: E402
from stream.partition_states import PartitionStates  # noqa: E402
from stream.session import Limits  # noqa: E402
from stream.stores import redis_stores  # noqa: E402

BATCH = 1000


def batch(group: str, users: int, start: int) -> list[tuple[int, Event]]:
    return [(o, Event(event_id=f"e{o}", dataset_group=group, tracking_id="t", user_id=f"u{o % users}",
                      session_id=f"s{o % users}", event_type="click", item_id=f"i{o % 5000}",
                      sent_at=1.7e9 + o, received_at=0.0)) for o in range(start, start + BATCH)]


async def run(url: str, users: int, batches: int, history: int) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for kept in (None, PartitionStates(), None, PartitionStates()):
        stores = redis_stores(url, prefix=f"bench-apply-{uuid.uuid4().hex[:8]}")
        await stores.start()
        try:
            offset = 0
            for _ in range(users * history // BATCH):  # every user's history full first
                await apply_partition(batch("g", users, offset), position="p", store=stores.sessions,
                                      limits=Limits(), replay=None, kept=kept)
                offset += BATCH
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(batches):
                await apply_partition(batch("g", users, offset), position="p", store=stores.sessions,
                                      limits=Limits(), replay=None, kept=kept)
                offset += BATCH
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            await stores.sessions.erase_group("g")
        finally:
            await stores.close()
        rows.append({"states": "kept in memory" if kept else "read from Redis (baseline)",
                     "cpu_s_per_1000": 1000 * cpu / (batches * BATCH), "events_per_s": batches * BATCH / wall,
                     "load_average": os.getloadavg()[0]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--history", type=int, default=Limits().max_history)
    args = parser.parse_args()
    url, own = os.environ.get("OPZ_TEST_REDIS_URL"), None
    with tempfile.TemporaryDirectory() as tmp:
        if not url:
            own = RedisServer(base_dir=Path(tmp))
            own.start()
            url = own.url
        try:
            rows = asyncio.run(run(url, args.users, args.batches, args.history))
        finally:
            if own is not None:
                own.stop()
    print("| states | CPU s per 1,000 events | events/s | load average |\n|---|---:|---:|---|")
    for r in rows:
        print(f"| {r['states']} | {r['cpu_s_per_1000']:.3f} | {r['events_per_s']:,.0f} "
              f"| {r['load_average']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
