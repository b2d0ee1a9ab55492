"""aws-ecomm-frequently-bought-together: items bought in one session with the item, not co-viewed.

What people look at together (aws-sims on views) answers "what else might you consider"; a
bundle shelf needs what ends up in the same basket. So this learns from purchases only (the
trainer keeps the use case's event type, Purchase, before `fit` sees the rows) and only from
purchases close in time: a session is one user's run of purchases with no gap longer than
session_gap_s, and two items bought a week apart by the same user are no bundle.

sim(i, j) = co(i, j) / (n_i n_j) ** popularity_discount_factor, where co counts the sessions that
bought both (once per session, however many units) and n the sessions that bought each item, as
aws-sims counts users; any one shared session makes a pair. Baskets are small, so the pairs are
listed outright: each session of m distinct items gives m (m - 1) of them, built with numpy
repeats (no Python loop per session or per event), then counted with one np.unique. Memory is
the total of m ** 2 over sessions; a "session" of more than MAX_BASKET distinct items (a bulk
import stamped with one time, a reseller's account) is no basket, would cost m ** 2, and is left
out of both counts.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from training.interactions import Interactions
from training.sims import Sims

DEFAULTS = {"popularity_discount_factor": "0.5"}
MAX_BASKET = 100


def parse(params: Mapping[str, str] | None) -> dict[str, float]:
    """String hyperparameters (as a recommender's defaults give them); an unknown name is an error."""
    params = dict(params or {})
    if unknown := set(params) - set(DEFAULTS):
        raise ValueError(f"unknown aws-ecomm-frequently-bought-together hyperparameters: {sorted(unknown)}")
    return {name: float(params.get(name, default)) for name, default in DEFAULTS.items()}


def fit(data: Interactions, params: Mapping[str, str] | None = None, k: int = 100,
        session_gap_s: float = 1800) -> Sims:
    """Up to k items bought together with each item, from `data`'s rows (the purchases)."""
    alpha = parse(params)["popularity_discount_factor"]
    n = data.n_items
    session, item = baskets(data, session_gap_s)
    left, right = pairs_within(session)
    co_key, co = np.unique(item[left].astype(np.int64) * n + item[right], return_counts=True)
    i, j = co_key // n, co_key % n
    bought = np.bincount(item, minlength=n).astype(np.float64)  # sessions that bought each item
    sim = (co / (bought[i] * bought[j]) ** alpha).astype(np.float32)
    codes, sims = top_k_sparse(i, j, sim, n, k)
    return Sims(codes, sims, np.bincount(data.item, minlength=n).astype(np.float32))


def baskets(data: Interactions, session_gap_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(session, item) once per distinct item bought in each session, sorted by session then item;
    sessions of more than MAX_BASKET items are left out."""
    if not len(data):
        return np.zeros(0, np.int64), np.zeros(0, np.int32)
    # rows are sorted by user, then time: a session starts at a new user or after a long gap
    starts = np.ones(len(data), dtype=bool)
    starts[1:] = (data.user[1:] != data.user[:-1]) | (np.diff(data.time) > session_gap_s)
    session = np.cumsum(starts) - 1
    key = np.unique(session * data.n_items + data.item.astype(np.int64))
    session, item = key // data.n_items, (key % data.n_items).astype(np.int32)
    size = np.bincount(session)
    small = size[session] <= MAX_BASKET
    return session[small], item[small]


def pairs_within(session: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (a, b), a != b, of every ordered pair of entries in the same session (`session` is
    sorted): a run of m entries gives m (m - 1) pairs."""
    if not len(session):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
    size = np.diff(np.r_[first, len(session)])
    run = np.repeat(size, size)  # per entry, its session's size: how many pairs it leads
    left = np.repeat(np.arange(len(session)), run)
    start = np.repeat(np.repeat(first, size), run)
    right = start + np.arange(len(left)) - np.repeat(np.cumsum(run) - run, run)
    other = left != right
    return left[other], right[other]


def top_k_sparse(i: np.ndarray, j: np.ndarray, sim: np.ndarray, n: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """[n, k] neighbour codes (-1 pads) and similarities from the pairs (i, j, sim), best first,
    equal similarities by code so a retrain on the same data gives the same neighbours."""
    codes = np.full((n, k), -1, dtype=np.int32)
    sims = np.zeros((n, k), dtype=np.float32)
    order = np.lexsort((j, -sim, i))
    i, j, sim = i[order], j[order], sim[order]
    rank = np.arange(len(i)) - np.searchsorted(i, i)  # position within the item's run
    top = rank < k
    codes[i[top], rank[top]] = j[top]
    sims[i[top], rank[top]] = sim[top]
    return codes, sims
