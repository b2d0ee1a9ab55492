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

Metadata is the ITEMS table's own columns, except ITEM_ID and CREATION_TIMESTAMP:
- a string (or boolean) column is categorical: a value is split on "|" and each part, trimmed
  and lower-cased, is a token "column:part" (Personalize's categorical fields). Tokens are
  TF-IDF weighted (smoothed IDF, one count per item) so a rare shared genre says more than one
  every item has, and the categorical block of each item is L2-normalised;
- a numeric column is standardised (clipped to 3 deviations; missing values are the mean) and
  weighted by NUMERIC_WEIGHT in all, so it nudges the ranking without outvoting the categories.
A token that only one item has is dropped: it can make no two items alike and would only shrink
the shared ones once a vector is normalised. Textual fields (free text such as a description) are
not split into words; their values are almost all unique, so they drop out by the same rule:
this recipe ignores them. The cosine of the resulting vectors, negative values counted as none,
is the metadata similarity. It is computed in row blocks of the item x item matrix, each bounded
by sims.BLOCK_BYTES, so 10k items need a few hundred MB at most; the item x token matrix is dense,
which is fine while the kept tokens number in the thousands.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernel.recipes import BY_NAME
from training.interactions import Interactions
from training.sims import BLOCK_BYTES, Sims, cooccurrence_neighbours

DEFAULTS = {name: p.default for name, p in BY_NAME["aws-similar-items"].hyperparameters.items()}
NOT_METADATA = ("ITEM_ID", "CREATION_TIMESTAMP")
NUMERIC_WEIGHT = 0.25  # the norm of an item's numeric block next to its categorical one (1)
CLIP_SD = 3.0


def parse(params: Mapping[str, str] | None) -> dict[str, float]:
    """String hyperparameters (as a solution config gives them) over the defaults; an unknown name
    is an error, as a typo would otherwise train the defaults silently."""
    params = dict(params or {})
    if unknown := set(params) - set(DEFAULTS):
        raise ValueError(f"unknown aws-similar-items hyperparameters: {sorted(unknown)}")
    return {name: float(params.get(name, default)) for name, default in DEFAULTS.items()}


def fit(data: Interactions, items: pa.Table | None, params: Mapping[str, str] | None = None,
        k: int = 100) -> Sims:
    """Up to k neighbours per item of `data`'s vocabulary, which should already hold the catalogue's
    items without interactions (interactions.with_catalog), else they get no code to serve."""
    p = parse(params)
    w, alpha = p["metadata_weight"], p["popularity_discount_factor"]
    n = data.n_items
    if w < 1.0:
        cooc_codes, cooc_sims = cooccurrence_neighbours(data.user, data.item, n, alpha, 1, k)
    else:  # metadata alone: no need to count co-occurrences
        cooc_codes, cooc_sims = np.full((n, 0), -1, np.int32), np.zeros((n, 0), np.float32)
    features = item_features(items, data.item_ids) if w > 0.0 else np.zeros((n, 0), np.float32)
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


def item_features(items: pa.Table | None, item_ids: np.ndarray) -> np.ndarray:
    """float32 [len(item_ids), d]: each item's metadata vector, unit length, or zeros for an item the
    table lacks or describes with nothing usable. Rows of items outside `item_ids` are ignored."""
    n = len(item_ids)
    if items is None or items.num_rows == 0 or "ITEM_ID" not in items.column_names:
        return np.zeros((n, 0), np.float32)
    code_of = {item: c for c, item in enumerate(item_ids.tolist())}
    row_code = np.asarray([code_of.get(x, -1) for x in
                           items["ITEM_ID"].combine_chunks().cast(pa.string()).to_pylist()], dtype=np.int64)
    categorical, numeric = [], []
    for name in items.column_names:
        if name in NOT_METADATA:
            continue
        column = items[name].combine_chunks()
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind):
            categorical.append(_token_pairs(column, row_code))
        elif _is_number(kind) and (z := _standardised(column, row_code, n)) is not None:
            numeric.append(z)
    parts = [_tfidf(categorical, n)]
    if numeric:
        parts.append(np.stack(numeric, axis=1) * np.float32(NUMERIC_WEIGHT / np.sqrt(len(numeric))))
    return _unit_rows(np.concatenate(parts, axis=1).astype(np.float32))


def _token_pairs(column: pa.Array, row_code: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A categorical column as (item code, token) pairs, one per part of each item's value, and how
    many tokens the column has; a token is its index among the column's distinct parts, so "Comedy"
    in GENRES and in MOOD stay different tokens once the columns' tokens are put side by side."""
    parts = pc.split_pattern(column.cast(pa.string()), "|")
    parent = np.asarray(pc.list_parent_indices(parts), dtype=np.int64)
    words = pc.utf8_lower(pc.utf8_trim_whitespace(pc.list_flatten(parts)))
    keep = np.asarray(pc.not_equal(words, "").fill_null(False), dtype=bool) & (row_code[parent] >= 0)
    tokens = words.filter(pa.array(keep)).dictionary_encode()
    return row_code[parent][keep], np.asarray(tokens.indices, dtype=np.int64), len(tokens.dictionary)


def _tfidf(columns: list[tuple[np.ndarray, np.ndarray, int]], n: int) -> np.ndarray:
    """[n, tokens shared by two items or more]: smoothed IDF per (item, token), rows L2-normalised."""
    offsets = np.cumsum([0] + [size for _, _, size in columns])
    n_tokens = int(offsets[-1])
    if n_tokens == 0:
        return np.zeros((n, 0), np.float32)
    code = np.concatenate([c for c, _, _ in columns])
    token = np.concatenate([t + offsets[i] for i, (_, t, _) in enumerate(columns)])
    key = np.unique(code * n_tokens + token)  # one count per item and token
    code, token = key // n_tokens, key % n_tokens
    df = np.bincount(token, minlength=n_tokens)
    shared = np.flatnonzero(df >= 2)
    column = np.full(n_tokens, -1, np.int64)
    column[shared] = np.arange(len(shared))
    described = len(np.unique(code))
    idf = (np.log((1.0 + described) / (1.0 + df[shared])) + 1.0).astype(np.float32)
    x = np.zeros((n, len(shared)), np.float32)
    kept = column[token] >= 0
    x[code[kept], column[token[kept]]] = idf[column[token[kept]]]
    return _unit_rows(x)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _standardised(column: pa.Array, row_code: np.ndarray, n: int) -> np.ndarray | None:
    """[n] z-scores of a numeric column (missing: 0, the mean), or None where it does not vary."""
    values = np.asarray(column.cast(pa.float64()).fill_null(np.nan), dtype=np.float64)
    ok = (row_code >= 0) & np.isfinite(values)
    if ok.sum() < 2 or (sd := float(values[ok].std())) == 0.0:
        return None
    z = np.zeros(n, np.float32)
    z[row_code[ok]] = np.clip((values[ok] - values[ok].mean()) / sd, -CLIP_SD, CLIP_SD)
    return z


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def catalogue(items: pa.Table | None) -> list[str]:
    """The ITEMS table's item ids (none without the table), to give each a code (with_catalog)."""
    if items is None or "ITEM_ID" not in items.column_names:
        return []
    return [x for x in items["ITEM_ID"].combine_chunks().cast(pa.string()).to_pylist() if x is not None]
