"""Per-item popularity and time-decayed trending scores: the maths, no I/O.

Popularity is a count per item (and per item and event type). Trending decays with a
half-life without rewriting old scores: an event at time t adds 2^((t - t0) / half_life)
to its item, where t0 starts the current *epoch*; reading at time `now` multiplies by
2^(-(now - t0) / half_life). Epochs last EPOCH_HALF_LIVES half-lives so the weights stay
far from float overflow; a read combines the current and the previous epoch (anything
older has decayed by 2^-64 or more and is dropped).

Trending-Now's counts are plain: `bucket:<index>` counts each item's events per BUCKET_S bucket
of their sentAt (kernel/trending.py turns buckets into windows). Only recent buckets can take
part in an evaluation, so the stores let one go once its `expires_at` has passed.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from kernel.contract import Event
from kernel.trending import bucket_expires_at, bucket_of

EPOCH_HALF_LIVES = 64
Counter = tuple[str, str]  # (dataset group, counter name)
Increments = dict[Counter, dict[str, float]]  # counter -> item -> amount


def epoch(ts: float, half_life_s: float) -> int:
    return int(ts // (EPOCH_HALF_LIVES * half_life_s))


def trending_name(epoch_id: int) -> str:
    return f"trending:{epoch_id}"


BUCKET = "bucket:"


def bucket_name(index: int) -> str:
    return f"{BUCKET}{index}"


def expires_at(name: str) -> int | None:
    """When a counter may be deleted (Unix seconds): a bucket's; None for the others (kept)."""
    return bucket_expires_at(int(name[len(BUCKET):])) if name.startswith(BUCKET) else None


def increments(events: Iterable[Event], half_life_s: float) -> Increments:
    """What a batch of (already deduplicated) events adds to each counter."""
    out: Increments = defaultdict(lambda: defaultdict(float))
    for e in events:
        if e.item_id is None:
            continue
        out[(e.dataset_group, "popularity")][e.item_id] += 1.0
        out[(e.dataset_group, f"popularity:{e.event_type}")][e.item_id] += 1.0
        ep = epoch(e.sent_at, half_life_s)
        start = ep * EPOCH_HALF_LIVES * half_life_s
        out[(e.dataset_group, trending_name(ep))][e.item_id] += 2.0 ** ((e.sent_at - start) / half_life_s)
        out[(e.dataset_group, bucket_name(bucket_of(e.sent_at)))][e.item_id] += 1.0
    return {k: dict(v) for k, v in out.items()}


def trending_counters(now: float, half_life_s: float) -> tuple[str, str]:
    """The two epochs' counter names to read at `now`: (current, previous)."""
    ep = epoch(now, half_life_s)
    return trending_name(ep), trending_name(ep - 1)


def trending_scores(current: Mapping[str, float], previous: Mapping[str, float], now: float,
                    half_life_s: float) -> dict[str, float]:
    """Decayed scores at `now` (in 'events', an event at `now` counts 1.0)."""
    ep = epoch(now, half_life_s)
    span = EPOCH_HALF_LIVES * half_life_s
    out: dict[str, float] = {}
    for raw, start in ((current, ep * span), (previous, (ep - 1) * span)):
        scale = 2.0 ** (-(now - start) / half_life_s)
        for item, score in raw.items():
            out[item] = out.get(item, 0.0) + score * scale
    return out


def top(scores: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    """Highest first; ties broken by item id so results are stable."""
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
