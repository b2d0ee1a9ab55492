"""aws-similar-items: co-occurrence blended with item metadata, so a new item with metadata has neighbours.

Co-occurrence alone (aws-sims) knows nothing of an item nobody has interacted with yet, which is
exactly the item a catalogue most needs to show. Metadata knows every item from the day it is
imported, but says less about taste than what people actually use together. So each item's
neighbours are ranked by

    sim(i, j) = (1 - w) * cooc(i, j) / max_j' cooc(i, j') + w * meta(i, j) / max_j' meta(i, j')

with w = metadata_weight: each part is divided by its best value for the query item, as a
co-occurrence score (co(i, j) / (n_i n_j) ** popularity_discount_factor, as aws-sims, from any
one co-interaction) and a cosine live on different scales. An item without interactions is
ranked by metadata alone and, through metadata, is a neighbour of the items it resembles.
Co-occurrence enters through each item's top k neighbours only: a pair beyond them counts as
metadata alone, which changes little when k is the 100 served.

Metadata vectors come from kernel.item_features: categorical tokens TF-IDF weighted, the textual field's
words too, numbers standardised, unit length. The cosine of those vectors, negative values counted
as none, is the metadata similarity. It is computed in row blocks of the item x item matrix, each
bounded by sims.BLOCK_BYTES, so 10k items need a few hundred MB at most; the item x token matrix is
dense, which is fine while the kept tokens number in the thousands.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from kernel.item_features import item_features
from kernel.recipes import BY_NAME
from training.interactions import Interactions
from training.sims import BLOCK_BYTES, Sims, cooccurrence_neighbours

DEFAULTS = {name: p.default for name, p in BY_NAME["aws-similar-items"].hyperparameters.items()}


def parse(params: Mapping[str, str] | None) -> dict[str, float]:
    """String hyperparameters (as a solution config gives them) over the defaults; an unknown name
    is an error, as a typo would otherwise train the defaults silently."""
    params = dict(params or {})
    if unknown := set(params) - set(DEFAULTS):
        raise ValueError(f"unknown aws-similar-items hyperparameters: {sorted(unknown)}")
    return {name: float(params.get(name, default)) for name, default in DEFAULTS.items()}


def fit(data: Interactions, items: pa.Table | None, params: Mapping[str, str] | None = None,
        k: int = 100, textual: str | None = None) -> Sims:
    """Up to k neighbours per item of `data`'s vocabulary, which should already hold the catalogue's
    items without interactions (interactions.with_catalog), else they get no code to serve."""
    p = parse(params)
    w, alpha = p["metadata_weight"], p["popularity_discount_factor"]
    n = data.n_items
    if w < 1.0:
        cooc_codes, cooc_sims = cooccurrence_neighbours(data.user, data.item, n, alpha, 1, k)
    else:  # metadata alone: no need to count co-occurrences
        cooc_codes, cooc_sims = np.full((n, 0), -1, np.int32), np.zeros((n, 0), np.float32)
    features = item_features(items, data.item_ids, textual) if w > 0.0 else np.zeros((n, 0), np.float32)
    codes, sims = blend(cooc_codes, cooc_sims, features, w, k)
    return Sims(codes, sims, np.bincount(data.item, minlength=n).astype(np.float32))


def blend(cooc_codes: np.ndarray, cooc_sims: np.ndarray, features: np.ndarray, w: float,
          k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k neighbours per item by (1 - w) * co-occurrence + w * cosine of `features`, each part
    divided by its row's maximum. Rows of the item x item matrix are taken in blocks, so memory is
    bounded whatever the catalogue's size."""
    n = len(features)
    codes = np.full((n, k), -1, dtype=np.int32)
    sims = np.zeros((n, k), dtype=np.float32)
    if n == 0:
        return codes, sims
    cooc = _per_row_max(cooc_sims)
    kk = min(k, n)
    block = max(1, BLOCK_BYTES // (4 * n))
    for b in range(0, n, block):
        rows = np.arange(b, min(n, b + block))
        s = features[rows] @ features.T  # cosine: rows are unit vectors or zeros
        s[np.arange(len(rows)), rows] = 0.0  # an item is not its own neighbour
        np.maximum(s, 0.0, out=s)
        s = _per_row_max(s) * np.float32(w)
        nb, part = cooc_codes[rows], cooc[rows]
        ok = nb >= 0
        s[np.nonzero(ok)[0], nb[ok]] += np.float32(1.0 - w) * part[ok]  # codes are unique in a row
        top, val = top_k(s, kk)
        codes[rows, :kk] = np.where(val > 0, top, -1)
        sims[rows, :kk] = val
    return codes, sims


def top_k(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest entries' columns and values, best first, equal values by column, so a
    retrain on the same data gives the same neighbours."""
    top = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.argsort(-s, axis=1)
    val = np.take_along_axis(s, top, axis=1)
    order = np.lexsort((top, -val), axis=1)
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(val, order, axis=1)


def _per_row_max(s: np.ndarray) -> np.ndarray:
    """Each row divided by its maximum (rows of zeros stay zeros), so each part's best is 1."""
    top = s.max(axis=1, keepdims=True, initial=0.0)
    return np.divide(s, top, out=np.zeros_like(s), where=top > 0)


def catalogue(items: pa.Table | None) -> list[str]:
    """The ITEMS table's item ids (none without the table), to give each a code (with_catalog)."""
    if items is None or "ITEM_ID" not in items.column_names:
        return []
    return [x for x in items["ITEM_ID"].combine_chunks().cast(pa.string()).to_pylist() if x is not None]
