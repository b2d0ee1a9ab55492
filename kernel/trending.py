"""Trending-Now's maths, shared by the trainer (its Scorer, its artifact) and serving (scores at
wall-clock time from the artifact and the stream's counters). Pure numpy, no I/O.

Personalize: "For every <frequency> of data, Personalize identifies the items with the greatest
rate of increase since the last evaluation." Here an evaluation at time `now` compares the last
two *complete* windows of the frequency F, aligned to multiples of F since the epoch:
b = floor(now / F) * F, the latest window W1 = [b - F, b) and the one before, W0 = [b - 2F, b - F).
An item's growth is c1 - c0 (its interactions in W1 less those in W0); the order is by growth,
ties by c1, then by all-time popularity. With no interaction in either window the order is
popularity's, as Personalize's "only popular items" when nothing came in lately.

Counts are kept in BUCKET_S buckets, which every frequency is a multiple of, so the windows of
any frequency are sums of whole buckets: the stream counts one counter per bucket, the trainer
stores the buckets of its data's newest windows, and either window is a sum over them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kernel.recipes import BY_NAME, TREND_FREQUENCIES

BUCKET_S = 1800
DEFAULT_FREQUENCY = BY_NAME["aws-trending-now"].hyperparameters["trend_discovery_frequency"].default
assert all(f % BUCKET_S == 0 for f in TREND_FREQUENCIES.values())
# How long a bucket must stay readable after it ends. An evaluation just before a window boundary
# (now = b + F - epsilon) reads back to b - 2F, nearly 3F ago: for the 1-day frequency, 3 days.
KEEP_S = 3 * max(TREND_FREQUENCIES.values())
# an artifact's files (roles -> names in its manifest): its bucket counts and its frequency
FILES = {"trending_buckets": "trending_buckets.npy", "trending": "trending.json"}


def frequency_seconds(name: str) -> int:
    """`trend_discovery_frequency` ("1 hour") in seconds."""
    return TREND_FREQUENCIES[name]


def bucket_of(ts: float) -> int:
    """The bucket an interaction at `ts` (Unix seconds) counts in."""
    return int(ts // BUCKET_S)


def bucket_expires_at(index: int) -> int:
    """When a bucket's count can no longer take part in any evaluation (Unix seconds)."""
    return (index + 1) * BUCKET_S + KEEP_S


def oldest_kept_bucket(now: float) -> int:
    """The oldest bucket whose count may still take part in an evaluation at `now` or later."""
    return int((now - KEEP_S) // BUCKET_S)


class Windows(NamedTuple):
    """The two complete windows an evaluation compares, as bucket indices: W0 = [start, middle),
    W1 = [middle, end)."""
    start: int
    middle: int
    end: int

    @property
    def buckets(self) -> range:
        return range(self.start, self.end)


def windows(now: float, frequency_s: int) -> Windows:
    """The windows evaluated at `now`: the last two complete multiples of the frequency."""
    end = int(now // frequency_s) * frequency_s
    per = frequency_s // BUCKET_S
    last = end // BUCKET_S
    return Windows(last - 2 * per, last - per, last)


@dataclass(frozen=True)
class BucketCounts:
    """Sparse counts: interactions of item `item[i]` in bucket `bucket[i]` were `count[i]`. One row
    per (bucket, item) that has any: a day's buckets times a large catalog would not fit dense."""
    bucket: np.ndarray  # int64 bucket index
    item: np.ndarray  # int64 item code
    count: np.ndarray  # float64

    def __post_init__(self) -> None:
        assert len(self.bucket) == len(self.item) == len(self.count)

    def __len__(self) -> int:
        return len(self.bucket)

    def to_array(self) -> np.ndarray:
        """int64 [n, 3] rows (bucket, item, count): the artifact's file."""
        return np.stack([self.bucket, self.item, np.rint(self.count)], axis=1).astype(np.int64) \
            if len(self) else np.zeros((0, 3), dtype=np.int64)

    def within(self, buckets: range) -> BucketCounts:
        keep = (self.bucket >= buckets.start) & (self.bucket < buckets.stop)
        return BucketCounts(self.bucket[keep], self.item[keep], self.count[keep])


def counts_of(array: np.ndarray) -> BucketCounts:
    """BucketCounts from the artifact's int64 [n, 3] rows."""
    a = np.asarray(array, dtype=np.int64).reshape(-1, 3)
    return BucketCounts(a[:, 0].copy(), a[:, 1].copy(), a[:, 2].astype(np.float64))


def no_counts() -> BucketCounts:
    return counts_of(np.zeros((0, 3), dtype=np.int64))


def bucketed(item: np.ndarray, time: np.ndarray, since_bucket: int) -> BucketCounts:
    """Interaction rows (item codes, Unix seconds) counted per (bucket, item), from bucket
    `since_bucket` on (older rows cannot take part in an evaluation from then on)."""
    b = np.asarray(time, dtype=np.int64) // BUCKET_S
    keep = b >= since_bucket
    b, i = b[keep], np.asarray(item, dtype=np.int64)[keep]
    if not len(b):
        return no_counts()
    width = int(i.max()) + 1
    keys, n = np.unique((b - since_bucket) * width + i, return_counts=True)
    return BucketCounts(keys // width + since_bucket, keys % width, n.astype(np.float64))


def merged(a: BucketCounts, b: BucketCounts) -> BucketCounts:
    """Per (bucket, item), the larger of the two counts. The artifact's buckets and the stream's
    overlap: events streamed before training also reach it through the archive, so adding the
    two would count them twice; the larger is each bucket's best estimate."""
    bucket = np.concatenate([a.bucket, b.bucket])
    item = np.concatenate([a.item, b.item])
    count = np.concatenate([a.count, b.count])
    if not len(bucket):
        return no_counts()
    order = np.lexsort((item, bucket))
    bucket, item, count = bucket[order], item[order], count[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(bucket) != 0) | (np.diff(item) != 0)])
    return BucketCounts(bucket[starts], item[starts], np.maximum.reduceat(count, starts))


def window_counts(counts: BucketCounts, at: Windows, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(c0, c1): each item's interactions in W0 and in W1 (float64 [n_items]); codes outside
    [0, n_items) are not the model's items and are left out."""
    known = (counts.item >= 0) & (counts.item < n_items)
    def total(lo: int, hi: int) -> np.ndarray:
        rows = known & (counts.bucket >= lo) & (counts.bucket < hi)
        return np.bincount(counts.item[rows], weights=counts.count[rows], minlength=n_items)
    return total(at.start, at.middle), total(at.middle, at.end)


def trending_order(c0: np.ndarray, c1: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Item codes, most trending first: growth c1 - c0, then c1, then popularity, then code."""
    return np.lexsort((np.arange(len(c1)), -popularity, -c1, -(c1 - c0)))


def trending_scores(c0: np.ndarray, c1: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """float32 scores in trending order: 1 / (1 + r) for the r-th distinct key (growth, c1,
    popularity), so equal keys score equally. Rank-based, because the order is lexicographic (a
    weighted sum of the three would not fit float32's precision), and positive with a finite sum,
    as serving normalises these recipes' scores by their sum: the top item gets the largest share."""
    order = trending_order(c0, c1, popularity)
    keys = np.stack([(c1 - c0)[order], c1[order], np.asarray(popularity, dtype=np.float64)[order]], axis=1)
    new_key = np.r_[True, np.any(np.diff(keys, axis=0) != 0, axis=1)] if len(order) else np.zeros(0, bool)
    rank = np.cumsum(new_key) - 1
    scores = np.empty(len(order), dtype=np.float32)
    scores[order] = 1.0 / (1.0 + rank)
    return scores


def scores_at(counts: BucketCounts, popularity: np.ndarray, now: float, frequency_s: int) -> np.ndarray:
    """Every item's trending score evaluated at `now`."""
    c0, c1 = window_counts(counts, windows(now, frequency_s), len(popularity))
    return trending_scores(c0, c1, np.asarray(popularity, dtype=np.float64))


def streamed_counts(buckets: Sequence[int], counters: Sequence[dict[str, float]],
                    code_of: Mapping[str, int]) -> BucketCounts:
    """The stream's bucket counters (one item -> count mapping per bucket index) in item codes;
    items `code_of` does not know (new since training) are left out: the model cannot name them."""
    rows = [(b, code_of[item], n) for b, counter in zip(buckets, counters, strict=True)
            for item, n in counter.items() if item in code_of]
    if not rows:
        return no_counts()
    b, i, n = zip(*rows, strict=True)
    return BucketCounts(np.asarray(b, np.int64), np.asarray(i, np.int64), np.asarray(n, np.float64))
