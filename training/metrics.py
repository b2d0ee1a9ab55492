"""Offline ranking metrics under Amazon Personalize's names, plus the literature's HR@10.

Definitions follow https://docs.aws.amazon.com/personalize/latest/dg/working-with-training-metrics.html
with binary relevance: an item is relevant to a user iff it is among that user's held-out items.
Every metric is a mean over evaluated users except coverage, which is a property of all lists together.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from training.split import Split

TOP = 25  # Personalize evaluates the top 25 recommendations


class Scorer(Protocol):
    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray]) -> np.ndarray:
        """float32 [len(users), n_items], higher is better; the evaluator excludes history items."""
        ...


def top_k(scores: np.ndarray, exclude: list[np.ndarray], k: int) -> np.ndarray:
    """Best k item codes per row, best first; excluded items never appear (slots left are -1).

    argpartition keeps this O(n_items) per row; ties at the k-th score are cut arbitrarily but
    deterministically, and inside the top k equal scores are ordered by item code."""
    s = np.array(scores, dtype=np.float32, copy=True)
    rows = np.repeat(np.arange(len(s)), [len(e) for e in exclude])
    if len(rows):
        s[rows, np.concatenate(exclude)] = -np.inf
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.tile(np.arange(k), (len(s), 1))
    vals = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    ranked = np.take_along_axis(part, order, axis=1)
    ranked[np.take_along_axis(vals, order, axis=1) == -np.inf] = -1
    return ranked


def _hits(ranked: np.ndarray, held_out: list[np.ndarray], n_items: int) -> np.ndarray:
    """hits[u, r]: is the item at rank r + 1 relevant to user u (vectorised via per-user keys)."""
    base = np.arange(len(ranked), dtype=np.int64)[:, None] * (n_items + 1)
    relevant = np.concatenate([u * (n_items + 1) + np.asarray(h, dtype=np.int64)
                               for u, h in enumerate(held_out)] or [np.empty(0, np.int64)])
    return np.isin(base + ranked, relevant) & (ranked >= 0)


def _ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """DCG@k / IDCG@k with weight 1/log2(1 + rank); the ideal list puts min(k, |relevant|) hits first."""
    w = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * w[: hits[:, :k].shape[1]]).sum(1)
    idcg = np.concatenate([[0.0], np.cumsum(w)])[np.minimum(n_relevant, k)]
    return np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0)


def ranking_metrics(ranked: np.ndarray, held_out: list[np.ndarray], n_items: int) -> dict[str, float]:
    """Metrics of ranked lists (int [n_users, >= 25], -1 = empty slot) against held-out items.

    coverage / coverage_at_10: distinct item codes in all users' top-25 / top-10 lists, divided by
    n_items (the catalogue the model could recommend: every item code of the interactions).
    mean_reciprocal_rank_at_25: 1 / rank of the first relevant item in the top 25, else 0.
    normalized_discounted_cumulative_gain_at_K: binary-relevance DCG@K over IDCG@K, where IDCG counts
    min(K, |distinct held-out items|) hits at the top (Personalize's worked example: 0.6241).
    precision_at_K: relevant items in the top K / K.  hit_rate_at_10: any relevant item in the top 10.
    Nobody to evaluate (e.g. every user has one interaction): zeros.
    """
    return scored(ranked, held_out, n_items)[0]


def scored(ranked: np.ndarray, held_out: list[np.ndarray], n_items: int
           ) -> tuple[dict[str, float], dict[str, float]]:
    """`ranking_metrics`, and half the width of each mean metric's 95% confidence interval
    (normal approximation over the evaluated users; none for one user): how far apart two
    versions' figures must be before the difference means anything. One pass over the users."""
    def coverage(k: int) -> float:
        top = ranked[:, :k]
        return len(np.unique(top[top >= 0])) / n_items

    per_user = per_user_metrics(ranked, held_out, n_items)
    metrics = {"coverage": coverage(TOP), "coverage_at_10": coverage(10)}
    metrics |= {name: float(np.mean(v)) for name, v in per_user.items()}
    if len(ranked) < 2:
        return metrics, {}
    return metrics, {name: float(1.96 * np.std(v, ddof=1) / np.sqrt(len(v))) for name, v in per_user.items()}


def per_user_metrics(ranked: np.ndarray, held_out: list[np.ndarray], n_items: int) -> dict[str, np.ndarray]:
    """Each evaluated user's value of every metric that is a mean over users (all but coverage)."""
    if not len(ranked):  # nobody to evaluate: one user without hits, so every mean is 0
        ranked = np.full((1, TOP), -1)
        held_out = [np.empty(0, np.int64)]
    hits = _hits(ranked, held_out, n_items)
    n_rel = np.array([len(np.unique(h)) for h in held_out], dtype=np.int64)
    first = np.where(hits[:, :TOP].any(1), hits[:, :TOP].argmax(1) + 1, np.inf)
    out = {"mean_reciprocal_rank_at_25": 1.0 / first}
    out |= {f"normalized_discounted_cumulative_gain_at_{k}": _ndcg(hits, n_rel, k) for k in (5, 10, 25)}
    out |= {f"precision_at_{k}": hits[:, :k].sum(1) / k for k in (5, 10, 25)}
    return out | {"hit_rate_at_10": hits[:, :10].any(1).astype(np.float64)}


def rank(model: Scorer, split: Split, batch: int = 1024, exclude_history: bool = True) -> np.ndarray:
    """Score evaluated users in batches (bounded memory) and rank each one's top 25 minus history.
    `exclude_history=False` ranks what a campaign without a filter answers: history included."""
    ranked = []
    for b in range(0, len(split.users), batch):
        sl = slice(b, b + batch)
        scores = model.score(split.users[sl], split.history[sl], split.history_time[sl])
        excluded = split.history[sl] if exclude_history else [np.empty(0, np.int64)] * len(scores)
        ranked.append(top_k(scores, excluded, TOP))
    return np.concatenate(ranked or [np.empty((0, TOP), np.int64)])


def evaluate(model: Scorer, split: Split, n_items: int, batch: int = 1024,
             exclude_history: bool = True) -> dict[str, float]:
    """The metrics of `model`'s top 25 for the split's evaluated users."""
    return ranking_metrics(rank(model, split, batch, exclude_history), split.held_out, n_items)
