"""Popularity-Count: Personalize's recommended baseline, the most interacted-with items for everyone.

Counts every training row (repeat interactions count again), as Personalize's recipe counts events.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.interactions import Interactions


@dataclass(frozen=True)
class Popularity:
    counts: np.ndarray  # int64 rows per item code in train

    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray]) -> np.ndarray:
        """The same counts for every user (a broadcast view: no per-user memory)."""
        return np.broadcast_to(self.counts.astype(np.float32), (len(users), len(self.counts)))


def fit(data: Interactions) -> Popularity:
    return Popularity(np.bincount(data.item, minlength=data.n_items).astype(np.int64))
