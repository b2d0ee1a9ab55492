"""Ranking metrics on lists whose values are computed by hand (Personalize's worked example first)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import evaluate, ranking_metrics, scored, top_k
from training.split import Split

N = 100  # catalogue size


def lists(*rows: list[int]) -> np.ndarray:
    """Ranked lists padded to 25 with items nobody holds out (90..)."""
    return np.array([r + [90 + i for i in range(25 - len(r))] for r in rows])


def test_personalize_worked_example_hits_at_ranks_2_and_5() -> None:
    m = ranking_metrics(lists([0, 7, 1, 2, 8]), [np.array([7, 8])], N)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(0.5)
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(0.6241, abs=1e-4)
    assert m["precision_at_5"] == pytest.approx(0.4)
    assert m["precision_at_10"] == pytest.approx(0.2)
    assert m["precision_at_25"] == pytest.approx(0.08)


def test_ndcg_ideal_counts_at_most_k_relevant_items() -> None:
    held = np.arange(30)  # 30 relevant, all of the top 25 hit
    m = ranking_metrics(np.arange(25)[None], [held], N)
    for k in (5, 10, 25):
        assert m[f"normalized_discounted_cumulative_gain_at_{k}"] == pytest.approx(1.0)
    one = ranking_metrics(lists([1, 2, 3]), [np.array([3])], N)  # hit at rank 3
    assert one["normalized_discounted_cumulative_gain_at_10"] == pytest.approx(1 / math.log2(4))


def test_duplicate_held_out_items_are_one_relevant_item() -> None:
    m = ranking_metrics(lists([5]), [np.array([5, 5])], N)
    assert m["normalized_discounted_cumulative_gain_at_10"] == pytest.approx(1.0)


def test_hit_rate_and_mrr_are_means_over_users() -> None:
    ranked = lists(list(range(10)), list(range(10, 21)), [30, 31])
    held = [np.array([9]), np.array([20]), np.array([31])]  # ranks 10, 11, 2
    m = ranking_metrics(ranked, held, N)
    assert m["hit_rate_at_10"] == pytest.approx(2 / 3)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx((1 / 10 + 1 / 11 + 1 / 2) / 3)


def test_mrr_ignores_hits_below_25() -> None:
    ranked = np.arange(30)[None]
    assert ranking_metrics(ranked, [np.array([27])], N)["mean_reciprocal_rank_at_25"] == 0.0


def test_a_confidence_interval_is_the_normal_approximation_over_users() -> None:
    ranked = lists([1], [2], [3], [4])
    held = [np.array([1]), np.array([2]), np.array([9]), np.array([9])]  # hit rate: 1, 1, 0, 0
    half = scored(ranked, held, N)[1]
    assert half["hit_rate_at_10"] == pytest.approx(1.96 * np.std([1, 1, 0, 0], ddof=1) / 2)
    assert "coverage" not in half  # one figure for the catalogue, not a mean over users
    assert scored(lists([1]), [np.array([1])], N)[1] == {}  # one user: no spread to measure


def test_coverage_counts_distinct_items_over_all_lists() -> None:
    ranked = np.stack([np.arange(25), np.arange(5, 30)])
    m = ranking_metrics(ranked, [np.array([99]), np.array([99])], N)
    assert m["coverage"] == pytest.approx(30 / N)
    assert m["coverage_at_10"] == pytest.approx(15 / N)


def test_empty_slots_neither_hit_nor_count_as_covered() -> None:
    ranked = np.full((1, 25), -1)
    ranked[0, 0] = 3
    m = ranking_metrics(ranked, [np.array([3])], N)
    assert m["coverage"] == pytest.approx(1 / N)
    assert m["precision_at_5"] == pytest.approx(0.2)


def test_top_k_ranks_best_first_ties_by_code_and_never_excluded_items() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=np.float32)
    ranked = top_k(scores, [np.array([2]), np.array([4, 3, 2])], 3)
    assert ranked.tolist() == [[1, 3, 0], [1, 0, -1]]


def test_top_k_pads_when_the_catalogue_is_smaller_than_k() -> None:
    ranked = top_k(np.array([[1.0, 3.0, 2.0]], dtype=np.float32), [np.array([1])], 5)
    assert ranked.tolist() == [[2, 0, -1]]


class Fixed:
    """Scores item i as -i: the lowest codes first, whatever the user."""

    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray]) -> np.ndarray:
        return np.tile(-np.arange(N, dtype=np.float32), (len(users), 1))


def test_evaluate_excludes_history_and_batches() -> None:
    from training.interactions import Interactions

    empty = Interactions(*(np.empty(0, t) for t in (np.int32, np.int32, np.int64)),
                         np.empty(0, object), np.empty(0, object))
    history = [np.array([0]), np.array([0, 1, 2]), np.array([], int)]
    split = Split(empty, np.arange(3, dtype=np.int32), history, [np.zeros(len(h)) for h in history],
                  [np.array([1]), np.array([3]), np.array([0])])
    m = evaluate(Fixed(), split, N, batch=2)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(1.0)  # history pushes each target to rank 1
    assert m["coverage"] == pytest.approx(28 / N)  # 1..25, 3..27, 0..24


def test_no_evaluated_users_gives_zeros_not_nan() -> None:
    m = ranking_metrics(np.empty((0, 25), int), [], N)
    assert set(m.values()) == {0.0}
