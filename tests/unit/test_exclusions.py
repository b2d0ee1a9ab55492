"""serving.exclusions: a request's exclusions without a mask over the catalog, and the mask the
exact path builds from them."""
from __future__ import annotations

import numpy as np

from serving.exclusions import Allowed, Exclusions
from serving.ranking import best, top


def test_packed_bits_round_trip_and_answer_per_code() -> None:
    mask = np.zeros(13, dtype=bool)
    mask[[0, 3, 8, 12]] = True  # across byte boundaries, and a last partial byte
    allowed = Allowed.of(mask)
    assert allowed.count == 4 and len(allowed.bits) == 2
    assert allowed.mask().tolist() == mask.tolist()
    assert allowed.contains(np.arange(13)).tolist() == mask.tolist()


def test_the_bits_are_in_faiss_bitmap_order() -> None:
    # IDSelectorBitmap: item i is bit (i & 7) of byte i >> 3, least significant first
    assert Allowed.of(np.array([True] + [False] * 7 + [False, True])).bits.tolist() == [1, 2]


def test_seen_items_alone() -> None:
    ex = Exclusions.of(10, [7, 2, 7])  # a history may repeat an item
    assert ex.codes.tolist() == [2, 7]
    assert ex.n_allowed == 8
    assert np.flatnonzero(~ex.mask()).tolist() == [2, 7]


def test_seen_items_under_a_filter_count_only_where_the_filter_allows() -> None:
    allowed = Allowed.of(np.arange(10) % 2 == 0)  # 0, 2, 4, 6, 8
    ex = Exclusions.of(10, [2, 3], allowed)  # 3 is filtered out anyway
    assert ex.n_allowed == 4
    assert np.flatnonzero(ex.mask()).tolist() == [0, 4, 6, 8]


def test_no_exclusions() -> None:
    ex = Exclusions.of(5, [])
    assert ex.n_allowed == 5 and ex.mask().all()


def test_the_best_of_masked_scores_are_the_top_allowed_items() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random(1000).astype(np.float32)
    for allowed in (None, Allowed.of(rng.random(1000) < 0.2)):
        ex = Exclusions.of(1000, rng.integers(0, 1000, 80), allowed)
        masked = ex.masked(scores)
        assert np.isfinite(masked).tolist() == ex.mask().tolist() and masked.dtype == scores.dtype
        assert best(masked, 25, ex.n_allowed).tolist() == top(scores, ex.mask(), 25).tolist()
    assert best(Exclusions.of(3, [0, 1, 2]).masked(scores[:3]), 25, 0).tolist() == []
