"""serving.candidates: how many ANN candidates to ask for, which survive, and the normaliser."""
from __future__ import annotations

import numpy as np

from serving.candidates import MAX_CANDIDATES, approximable, probes_for, softmax_estimate


def test_few_exclusions_leave_the_index_to_answer() -> None:
    # seen items may be exactly the best-scoring ones: k plus all of them fit under the cap
    assert approximable(25, n_allowed=1_000_000 - 200, n_items=1_000_000)
    assert approximable(25, n_allowed=1_000_000 - (MAX_CANDIDATES - 25), n_items=1_000_000)


def test_a_broad_filter_leaves_the_index_to_answer() -> None:
    # 10% allowed: 25 / 0.1 x 1.5 slack = 375 unfiltered candidates would hold the best 25
    assert approximable(25, n_allowed=100_000, n_items=1_000_000)


def test_a_narrow_filter_or_too_few_allowed_items_means_exact_scoring() -> None:
    assert not approximable(25, n_allowed=5_000, n_items=1_000_000)  # would need 7,500 candidates
    assert not approximable(25, n_allowed=25, n_items=1_000_000)
    assert not approximable(25, n_allowed=10, n_items=1_000_000)


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
