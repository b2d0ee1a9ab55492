"""`personalize stream tail`: a downstream analytics consumer, as any team would write one.

Reads a dataset group's events in its own consumer group and prints each record as one
JSON line (the value as stored: schemas/event.v1.json). Works on Kafka and on the
embedded log, through the same EventLog seam.
"""
from __future__ import annotations

import re
import sys
from typing import TextIO

from kernel.contract import TOPIC_PREFIX, Undecodable, encode_event, events_topic_pattern
from kernel.settings import Settings
from stream.log import open_event_log


async def tail(settings: Settings, *, dataset_group: str, group: str, max_events: int | None = None,
               idle_timeout_s: float | None = None, out: TextIO = sys.stdout) -> int:
    """Print events until `max_events` were printed or nothing came for `idle_timeout_s`."""
    log = open_event_log(settings, client_id="opz-tail", dataset_groups=re.escape(dataset_group))
    await log.start()
    printed = 0
    try:
        while max_events is None or printed < max_events:
            events = await log.read(group, max_events=500, timeout_s=idle_timeout_s or 1.0)
            if not events and idle_timeout_s is not None:
                break
            for e in events:
                if e.dataset_group != dataset_group:  # the embedded log holds every group
                    continue
                if isinstance(e, Undecodable):  # the stream's consumers set it aside as a dead letter
                    print(f"skipped a record that does not decode: {e.error[:200]}", file=sys.stderr)  # noqa: T201
                    continue
                out.write(encode_event(e).decode() + "\n")
                printed += 1
            out.flush()
            await log.commit(group)  # at-least-once: commit what was printed
    finally:
        await log.close()
    return printed


async def groups_with_events(bootstrap: str) -> list[str]:
    """The dataset groups whose events topic Kafka holds: what a consumer on any host, knowing
    only the brokers, can tail."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="opz-tail")
    await admin.start()
    try:
        topics = await admin.list_topics()
    finally:
        await admin.close()
    pattern = re.compile(events_topic_pattern())
    return sorted(t[len(TOPIC_PREFIX):-len(".events")] for t in topics if pattern.match(t))
