"""Offline evaluation splits: which rows a model trains on, and what each evaluated user must find.

Two protocols share one shape (`Split`) so every recipe is scored by the same evaluator:
`leave_last_out` is the literature's next-item protocol (comparable with papers), and
`personalize_split` mimics what Amazon Personalize reports from GetSolutionMetrics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.interactions import Interactions


@dataclass(frozen=True)
class Split:
    train: Interactions  # rows a model trains on (test users' input rows included)
    users: np.ndarray  # int32 codes of the evaluated users
    history: list[np.ndarray]  # per evaluated user: item codes known at evaluation time, time order
    history_time: list[np.ndarray]  # their timestamps (session models need them)
    held_out: list[np.ndarray]  # per evaluated user: item codes to find


def _split(data: Interactions, users: np.ndarray, n_held: np.ndarray) -> Split:
    """Hold out the last `n_held[i]` rows of each `users[i]`; every other row is train."""
    off = data.offsets
    starts, ends = off[users], off[users + 1]
    cut = ends - n_held
    keep = np.ones(len(data), dtype=bool)
    for c, e in zip(cut, ends, strict=True):
        keep[c:e] = False
    return Split(
        train=data.take(keep),
        users=users.astype(np.int32),
        history=[data.item[s:c] for s, c in zip(starts, cut, strict=True)],
        history_time=[data.time[s:c] for s, c in zip(starts, cut, strict=True)],
        held_out=[data.item[c:e] for c, e in zip(cut, ends, strict=True)],
    )


def leave_last_out(data: Interactions) -> Split:
    """Every user with >= 2 interactions must find their last one (by time, ties in file order).

    History is all the user's earlier (training) rows; users with one interaction only train."""
    lengths = np.diff(data.offsets)
    users = np.flatnonzero(lengths >= 2)
    return _split(data, users, np.ones(len(users), dtype=np.int64))


def personalize_split(data: Interactions, test_user_fraction: float = 0.1, holdout_fraction: float = 0.1,
                      seed: int = 0) -> Split:
    """Amazon Personalize's solution-metrics protocol (the numbers GetSolutionMetrics reports).

    Documented at https://docs.aws.amazon.com/personalize/latest/dg/working-with-training-metrics.html:
    Personalize puts a random 10% of users in the test set; after training it gives the model the
    oldest 90% of each test user's interactions as input and compares its recommendations with the
    most recent 10%. What we implement:
    - test users: a seeded uniform sample of round(test_user_fraction * n) users (at least 1) among
      the n users with >= 2 interactions (a one-interaction user has nothing to give as input);
    - held out: each test user's most recent floor(holdout_fraction * length) rows, at least 1 and at
      most length - 1 (ties in time are ordered as in the file, as `Interactions` keeps them);
    - train: everything else, *including* test users' input rows. Personalize trains without the test
      users at all; keeping their input rows lets models that only know users seen in training (and
      popularity counts) see the same history the evaluator gives them. A deliberate deviation.
    """
    lengths = np.diff(data.offsets)
    eligible = np.flatnonzero(lengths >= 2)
    n_test = min(len(eligible), max(1, round(test_user_fraction * len(eligible))))
    users = np.sort(np.random.default_rng(seed).choice(eligible, size=n_test, replace=False))
    n = lengths[users]
    n_held = np.array([math.floor(holdout_fraction * k + 1e-9) for k in n], dtype=np.int64)
    return _split(data, users, np.clip(n_held, 1, n - 1))
