"""serving.candidates: how many ANN candidates to ask for, which survive, and the normaliser."""
from __future__ import annotations

import numpy as np

from serving.candidates import MAX_CANDIDATES, fetch_size, probes_for, softmax_estimate, survivors


def test_few_exclusions_are_all_fetched_on_top_of_k() -> None:
    # seen items may be exactly the best-scoring ones: room for every one of them
    assert fetch_size(25, n_allowed=1_000_000 - 200, n_items=1_000_000) == 225


def test_a_broad_filter_scales_the_request_by_what_it_lets_through() -> None:
    # 10% allowed: 25 / 0.1 x 1.5 slack
    assert fetch_size(25, n_allowed=100_000, n_items=1_000_000) == 375


def test_a_narrow_filter_or_too_few_allowed_items_means_exact_scoring() -> None:
    assert fetch_size(25, n_allowed=5_000, n_items=1_000_000) is None  # would need 7,500 candidates
    assert fetch_size(25, n_allowed=25, n_items=1_000_000) is None
    assert fetch_size(25, n_allowed=10, n_items=1_000_000) is None


def test_the_cap_bounds_every_request() -> None:
    for allowed in (30, 1_000, 50_000, 500_000, 999_999):
        m = fetch_size(25, allowed, 1_000_000)
        assert m is None or 25 < m <= MAX_CANDIDATES


def test_survivors_keep_the_best_allowed_in_order() -> None:
    codes = np.array([7, 3, 9, 1, 4, -1])
    allowed = np.ones(10, dtype=bool)
    allowed[[3, 1]] = False
    pos = survivors(codes, allowed, 3)
    assert pos is not None and codes[pos].tolist() == [7, 9, 4]


def test_too_few_survivors_ask_for_the_exact_fallback() -> None:
    codes = np.array([7, 3, -1, -1])  # the index ran short (-1 pads) and 3 is excluded
    allowed = np.ones(10, dtype=bool)
    allowed[3] = False
    assert survivors(codes, allowed, 2) is None
    assert survivors(codes, allowed, 1) is not None


def test_the_normaliser_is_exact_when_the_sample_is_the_whole_catalog() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal(1000).astype(np.float32) * 3
    cand = np.argsort(-scores)[:40]
    exact = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    in_cand = np.isin(np.arange(1000), cand)
    got = softmax_estimate(scores[cand], scores, in_cand, 1000)
    np.testing.assert_allclose(got, exact[cand], rtol=1e-5)


def test_the_normaliser_from_a_sample_is_close_on_a_large_catalog() -> None:
    rng = np.random.default_rng(1)
    scores = rng.standard_normal(200_000)
    cand = np.argsort(-scores)[:100]
    sample = np.sort(rng.choice(200_000, 4096, replace=False))
    exact = np.exp(scores[cand]) / np.exp(scores).sum()
    got = softmax_estimate(scores[cand], scores[sample], np.isin(sample, cand), 200_000)
    np.testing.assert_allclose(got, exact, rtol=0.05)


def test_a_filter_widens_the_search_but_never_past_every_list() -> None:
    assert probes_for(24, n_allowed=999_800, n_items=1_000_000, lists=4000) == 24  # seen items only
    assert probes_for(24, n_allowed=100_000, n_items=1_000_000, lists=4000) == 76  # 10%: x sqrt(10)
    assert probes_for(24, n_allowed=10, n_items=1_000_000, lists=4000) == 4000
