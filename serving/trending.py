"""Trending-Now at serving time: the model's scores evaluated at wall-clock now, from the
artifact's bucket counts and the stream's (kernel/trending.py has the maths).

Personalize's Trending-Now considers the interactions imported in bulk and streamed since, with
no new solution version. So a request to a trending model first refreshes its scores here: the
stream's `bucket:<index>` counters of the two windows evaluated now (stream/counters.py) are
read in one round trip and joined with the artifact's buckets. Where both have a bucket, each
item counts the larger of the two: events streamed before training reached the artifact too,
through the archive, and adding would count them twice (bulk rows and streamed events of one
bucket that training did not see together are then undercounted, never doubled). Items the
model's vocabulary does not know are left out: it cannot name them until the next version.

Only complete windows take part, so the scores change when a window closes or late events
come in. They are kept per (model, window) for TTL_S, so requests read the counters at most
once per TTL_S per model and process; concurrent requests share one read.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from kernel.trending import Windows, merged, scores_at, streamed_counts, windows
from stream.counters import bucket_name

if TYPE_CHECKING:
    from serving.models import Model
    from stream.store import Counters

TTL_S = 10.0


class _Kept(NamedTuple):
    window: int  # the evaluation's end bucket (Windows.end)
    until: float  # wall-clock time it is read again after
    scores: np.ndarray


class TrendingNow:
    """The current scores of the trending models this process serves."""

    def __init__(self, counters: Counters, ttl_s: float = TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.counters, self.ttl_s, self.clock = counters, ttl_s, clock
        self._kept: dict[str, _Kept] = {}  # model ARN -> its scores of the window evaluated last
        self._reading: dict[tuple[str, int], asyncio.Future[np.ndarray]] = {}

    async def refresh(self, model: Model, dataset_group: str) -> None:
        """Bring a trending model's scores (Model.trend_scores, what its user_scores answers) up
        to now; any other model is left as it is."""
        if model.trend_counts is not None:
            model.trend_scores = await self.scores(model, dataset_group)

    async def scores(self, model: Model, dataset_group: str) -> np.ndarray:
        """float32 per item code of the model, evaluated now."""
        now = self.clock()
        at = windows(now, model.trend_frequency_s)
        kept = self._kept.get(model.arn)
        if kept is not None and kept.window == at.end and now < kept.until:
            return kept.scores
        key = (model.arn, at.end)
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._read(model, dataset_group, at, now))
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return await asyncio.shield(reading)  # a request given up on leaves the read to the others

    async def _read(self, model: Model, dataset_group: str, at: Windows, now: float) -> np.ndarray:
        assert model.trend_counts is not None
        buckets = list(at.buckets)
        streamed = await self.counters.read_whole(dataset_group, [bucket_name(b) for b in buckets])
        counts = merged(model.trend_counts.within(at.buckets),
                        streamed_counts(buckets, streamed, model.index))
        scores = scores_at(counts, model.popularity, now, model.trend_frequency_s)
        self._kept = {arn: k for arn, k in self._kept.items() if now < k.until}  # models no longer asked
        self._kept[model.arn] = _Kept(at.end, now + self.ttl_s, scores)
        return scores
