"""Trending-Now: the items whose interactions grew most between the last two windows of
`trend_discovery_frequency` (kernel/trending.py has the maths serving shares).

Training only freezes the counts: the artifact keeps the buckets of its data's newest windows,
and serving adds the stream's buckets to them and evaluates at wall-clock time, so new items
and new trends show without a new solution version. For the metrics, the model scores as of
its data's newest interaction.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.trending import (
    BUCKET_S,
    DEFAULT_FREQUENCY,
    FILES,
    BucketCounts,
    bucketed,
    frequency_seconds,
    scores_at,
    windows,
)
from training.interactions import Interactions


@dataclass(frozen=True)
class Trending:
    frequency: str  # trend_discovery_frequency, "1 hour"
    counts: BucketCounts  # per (bucket, item code) from the oldest window an evaluation may need
    scores: np.ndarray  # float32 per item code as of `as_of`
    as_of: int  # the data's newest interaction time

    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray]) -> np.ndarray:
        """The same trending scores for every user (a broadcast view)."""
        return np.broadcast_to(self.scores, (len(users), len(self.scores)))

    def write(self, directory: Path) -> dict[str, str]:
        """Its files into an artifact directory; their roles for the manifest."""
        np.save(directory / FILES["trending_buckets"], self.counts.to_array())
        (directory / FILES["trending"]).write_text(json.dumps(
            {"frequency": self.frequency, "frequency_s": frequency_seconds(self.frequency),
             "bucket_s": BUCKET_S, "as_of": self.as_of}))
        return dict(FILES)


def fit(data: Interactions, params: dict[str, str]) -> Trending:
    """The counts of every bucket from the windows evaluated at the data's newest interaction on
    (W0 and W1, and the incomplete window after them, which the next evaluation calls W1)."""
    frequency = params.get("trend_discovery_frequency") or DEFAULT_FREQUENCY  # a use case takes none
    as_of = int(data.time.max()) if len(data) else 0
    counts = bucketed(data.item, data.time, windows(as_of, frequency_seconds(frequency)).start)
    popularity = np.bincount(data.item, minlength=data.n_items).astype(np.float64)
    return Trending(frequency, counts, scores_at(counts, popularity, as_of, frequency_seconds(frequency)),
                    as_of)
