"""Erasing data from the event log and the session store: the stream's part of DeleteDatasetGroup
and of data deletion jobs (the datasets and the archive are files: kernel.datasets, kernel.archive).

Each call opens the log and the store anew, from settings: the control plane runs it, in the
API process or a job's thread, away from the consumers' own connections. What the consumers
hold in memory while it runs is theirs to finish: a dataset group's erasure therefore empties
the log first, so that nothing more of it is delivered, and the store `settle_s` later, once the
batches in flight have landed.
"""
from __future__ import annotations

import asyncio
from collections.abc import Collection

from kernel.contract import RECORD_TYPES, anonymous_key, events_topic, records_topic
from kernel.settings import Settings
from stream.dead_letters import open_dead_letters
from stream.log import KafkaEventLog, SqliteEventLog, open_event_log
from stream.stores import open_stores

SETTLE_S = 1.0  # consumers hold a batch for milliseconds (2 ms to 50 ms, then one write)
LOAD_BATCH = 500  # users' states read per round trip


def group_topics(dataset_group: str) -> list[str]:
    """Every topic a dataset group's records are in."""
    return [events_topic(dataset_group), *(records_topic(dataset_group, t) for t in RECORD_TYPES)]


async def erase_group(settings: Settings, dataset_group: str, settle_s: float = SETTLE_S) -> None:
    """All the log, the session store and the dead letters keep of a dataset group
    (DeleteDatasetGroup)."""
    log = open_event_log(settings, client_id="opz-erasure")
    if isinstance(log, KafkaEventLog):
        await log.recreate_topics(group_topics(dataset_group))
    else:
        await _erase_records(log, group_topics(dataset_group))
    await asyncio.sleep(settle_s)
    stores = open_stores(settings)
    await stores.start()
    try:
        await stores.erase_group(dataset_group)
    finally:
        await stores.close()
    letters = open_dead_letters(settings)
    await letters.start()
    try:
        await letters.erase(dataset_group)
    finally:
        await letters.close()


async def erase_users(settings: Settings, dataset_group: str, users: Collection[str],
                      sessions: Collection[str] = ()) -> set[str]:
    """Users' session states, and those of the anonymous sessions they used (`sessions`, and the
    one each is in now); embedded, their records in the log too. Returns the users that had a
    state. Kafka cannot delete single records: the users' events stay in their topic until its
    retention drops them, and only a rebuild of lost session state (a replay) reads them."""
    users = list(dict.fromkeys(users))
    stores = open_stores(settings)
    await stores.start()
    try:
        current: set[str] = set()
        for start in range(0, len(users), LOAD_BATCH):
            some = users[start:start + LOAD_BATCH]
            states, _ = await stores.sessions.load([(dataset_group, u) for u in some])
            current.update(s.session_id for s in states if s is not None and s.session_id)
        keys = [*users, *(anonymous_key(s) for s in {*sessions, *current, *users})]
        found = await stores.sessions.erase(dataset_group, keys)
    finally:
        await stores.close()
    log = open_event_log(settings, client_id="opz-erasure")
    if isinstance(log, SqliteEventLog):
        await _erase_records(log, [events_topic(dataset_group), records_topic(dataset_group, "USERS"),
                                   records_topic(dataset_group, "ACTION_INTERACTIONS")], keys)
    return found & set(users) | {u for u in users if anonymous_key(u) in found}


async def _erase_records(log: SqliteEventLog, topics: list[str], keys: list[str] | None = None) -> None:
    await log.start()
    try:
        await log.erase(topics, keys)
    finally:
        await log.close()
