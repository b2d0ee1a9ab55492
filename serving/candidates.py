"""When the ANN index may answer a request, how widely it searches, and its estimated probabilities.

The index answers "the best items of the lists it scans"; the request's exclusions (seen items)
and filter go in as faiss ID selectors (serving.exclusions), so what comes back is already
allowed. The caller scores exactly instead where the index cannot serve well: too few allowed
items, or a filter so narrow that its best items lie in lists the search would not reach.

Scores are Personalize's probabilities over the whole catalog; the index only scores its
candidates, so the softmax's normaliser is estimated from a fixed uniform sample of items.
Pure numpy, no I/O.
"""
from __future__ import annotations

import math

import numpy as np

MAX_CANDIDATES = 4096  # a filter needing more candidates than this is too narrow for the index
SLACK = 1.5  # a filter lets through a fraction of the candidates: ask for 1.5x the expectation


def approximable(k: int, n_allowed: int, n_items: int, *, cap: int = MAX_CANDIDATES,
                 slack: float = SLACK) -> bool:
    """Whether the index may answer: more than k items allowed, and either few exclusions (seen
    items: k + all of them <= cap) or a filter letting through enough that the k best allowed
    would be among cap unfiltered candidates (slack x k x n_items / n_allowed <= cap)."""
    if n_allowed <= k:
        return False
    return k + n_items - n_allowed <= cap or math.ceil(slack * k * n_items / n_allowed) <= cap


def probes_for(probes: int, n_allowed: int, n_items: int, lists: int) -> int:
    """Lists to scan: more under a filter, whose best allowed items lie deeper in the ranking
    and so in lists whose centroids score lower. By sqrt(catalog / allowed): at 100k items and
    a 10% filter, 24 lists gave recall@25 0.93, 96 gave 0.98 (bench/serve.py)."""
    return min(lists, round(probes * math.sqrt(n_items / max(n_allowed, 1))))


def softmax_estimate(scores: np.ndarray, sample_scores: np.ndarray, sample_in_candidates: np.ndarray,
                     n_items: int) -> np.ndarray:
    """exp(s) / Z for every item whose exact score is known (the index's answers, and the
    excluded items, scored apart: Z is over the whole catalog, and seen items are the likeliest
    to weigh in it), Z = those items' own terms plus the rest of the catalog's, estimated as
    (n_items - known) x the mean term of the sample items that are not known ones (unbiased for
    a uniform sample)."""
    rest = sample_scores[~sample_in_candidates]
    shift = float(max(scores.max(initial=-np.inf), rest.max(initial=-np.inf)))
    head = np.exp(scores - shift)
    tail = float(np.exp(rest - shift).mean()) * (n_items - len(scores)) if len(rest) else 0.0
    return head / (head.sum() + tail)
