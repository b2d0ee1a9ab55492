"""Per-item counts the stream keeps beside users' states: the maths, no I/O.

Popularity is a count per item (and per item and event type). Trending-Now's counts are
plain too: `bucket:<index>` counts each item's events per BUCKET_S bucket of their sentAt
(kernel/trending.py turns buckets into windows). Only recent buckets can take part in an
evaluation, so the stores let one go once its `expires_at` has passed.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from kernel.contract import Event
from kernel.trending import bucket_expires_at, bucket_of

Counter = tuple[str, str]  # (dataset group, counter name)
Increments = dict[Counter, dict[str, float]]  # counter -> item -> amount


BUCKET = "bucket:"


def bucket_name(index: int) -> str:
    return f"{BUCKET}{index}"


def expires_at(name: str) -> int | None:
    """When a counter may be deleted (Unix seconds): a bucket's; None for the others (kept)."""
    return bucket_expires_at(int(name[len(BUCKET):])) if name.startswith(BUCKET) else None


def increments(events: Iterable[Event]) -> Increments:
    """What a batch of (already deduplicated) events adds to each counter."""
    out: Increments = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.item_id is None:
            continue
        out[(e.dataset_group, "popularity")][e.item_id] += 1.0
        out[(e.dataset_group, f"popularity:{e.event_type}")][e.item_id] += 1.0
        out[(e.dataset_group, bucket_name(bucket_of(e.sent_at)))][e.item_id] += 1.0
    return {k: dict(v) for k, v in out.items()}


def top(scores: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """Highest first; ties broken by item id so results are stable."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
