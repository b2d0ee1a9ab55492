"""Embedded mode as a user runs it: a real `personalize serve`, boto3, and a SIGKILL."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from support import Server

from kernel.archive import Archive
from stream.log import SqliteEventLog
from stream.stores import sqlite_stores

USERS, BATCHES = 5, 20  # 5 users x 20 PutEvents calls x 10 events = 1,000 events


async def read_back(data_dir: Path) -> tuple[list[str], list[int], list[str]]:
    """What the log, the session store and the archive hold (read while the server runs)."""
    log, store = SqliteEventLog(data_dir / "events.db"), sqlite_stores(data_dir / "sessions.db")
    archive = Archive(data_dir / "archive")
    for part in (log, store, archive):
        await part.start()
    try:
        ids: list[str] = []
        while batch := await log.read("audit", max_events=1000, timeout_s=0.1):
            ids += [e.event_id for e in batch]
        states, _ = await store.sessions.load([("shop", f"u{u}") for u in range(USERS)])
        archived = [e.event_id for e in await archive.read("shop")]
        return ids, [s.applied if s else 0 for s in states], archived
    finally:
        for part in (log, store, archive):
            await part.close()


def test_sigkill_loses_no_accepted_event(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    control = server.client("personalize")
    dsg = control.create_dataset_group(name="shop")["datasetGroupArn"]
    tracking_id = control.create_event_tracker(name="web", datasetGroupArn=dsg)["trackingId"]
    events = server.client("personalize-events")
    accepted = []
    for b in range(BATCHES):
        for u in range(USERS):
            batch = [{"eventId": f"u{u}-b{b}-{i}", "eventType": "click", "itemId": f"i{b * 10 + i}",
                      "sentAt": datetime.now(UTC)} for i in range(10)]
            events.put_events(trackingId=tracking_id, userId=f"u{u}", sessionId=f"s{u}",
                              eventList=batch)
            accepted += [e["eventId"] for e in batch]
    server.kill()  # no shutdown hook, no flush

    server.start()  # same data dir, new process
    try:
        assert control.describe_dataset_group(datasetGroupArn=dsg)["datasetGroup"]["name"] == "shop"
        deadline = time.monotonic() + 30  # the restarted applier catches up on what it missed
        while True:
            ids, applied, archived = asyncio.run(read_back(server.data_dir))
            if (applied == [BATCHES * 10] * USERS and len(archived) == len(accepted)
                    or time.monotonic() > deadline):
                break
            time.sleep(0.1)
    finally:
        server.stop()
    assert sorted(ids) == sorted(accepted)  # every 200 is in the log, once
    assert applied == [BATCHES * 10] * USERS  # and reached each user's state exactly once
    assert sorted(archived) == sorted(accepted)  # and the archive training reads, once
