"""From scores to the answer: top-k, and aws-user-personalization's item exploration."""
from __future__ import annotations

import numpy as np
import pytest

from serving.ranking import (
    DAY,
    Exploration,
    exploration_of,
    explore,
    normalise,
    parse_exploration,
    probabilities,
    rank_list,
    top,
    young,
)

# ten items; relevance falls with the code; items 7, 8, 9 are young (created in the last 30 days)
PROBS = np.linspace(1.0, 0.1, 10) / np.linspace(1.0, 0.1, 10).sum()
NOW = 1_700_000_000
CREATED = np.array([NOW - 400 * DAY] * 7 + [NOW - 2 * DAY, NOW - 10 * DAY, NOW - 29 * DAY])
COUNTS = np.array([50.0] * 7 + [0.0, 3.0, 1.0])
YOUNG = young(CREATED, NOW, 30)


def test_young_items_are_those_within_the_cut_off_of_the_newest_interaction() -> None:
    assert np.flatnonzero(YOUNG).tolist() == [7, 8, 9]
    assert np.flatnonzero(young(CREATED, NOW, 5)).tolist() == [7]


def test_no_weight_no_exploration() -> None:
    allowed = np.ones(10, dtype=bool)
    rng = np.random.default_rng(0)
    assert explore(PROBS, allowed, 5, YOUNG, COUNTS, 0.0, rng).tolist() == top(PROBS, allowed, 5).tolist()


def test_exploration_slots_go_to_young_items_from_the_bottom_up() -> None:
    allowed = np.ones(10, dtype=bool)
    for seed in range(20):
        got = explore(PROBS, allowed, 5, YOUNG, COUNTS, 0.4, np.random.default_rng(seed))
        # round(0.4 * 5) = 2 slots, spread evenly from the bottom: the 5th and the 3rd
        assert got[[0, 1, 3]].tolist() == [0, 1, 2]  # relevance keeps the others, in its order
        assert set(got[[2, 4]]) <= {7, 8, 9} and len(set(got)) == 5


def test_full_weight_fills_the_list_with_young_items_when_there_are_enough() -> None:
    allowed = np.ones(10, dtype=bool)
    got = explore(PROBS, allowed, 3, YOUNG, COUNTS, 1.0, np.random.default_rng(0))
    assert sorted(got.tolist()) == [7, 8, 9] and got.tolist() == sorted(got.tolist())  # by relevance
    got = explore(PROBS, allowed, 5, YOUNG, COUNTS, 1.0, np.random.default_rng(0))
    assert got.tolist() == [7, 8, 9, 0, 1]  # three young items lead; relevance fills the rest


def test_exploration_respects_what_is_not_allowed_and_prefers_the_unexplored() -> None:
    allowed = np.ones(10, dtype=bool)
    allowed[7] = False  # e.g. the user already clicked it, or a filter excludes it
    picks = [explore(PROBS, allowed, 4, YOUNG, COUNTS, 0.25, np.random.default_rng(seed))[-1]
             for seed in range(400)]
    assert 7 not in picks
    assert picks.count(9) > picks.count(8)  # one interaction beats three (9 is even a little less relevant)


def test_items_relevance_keeps_are_not_counted_as_exploration() -> None:
    probs = PROBS.copy()
    probs[8] = 1.0  # a young item that relevance ranks first anyway
    got = explore(probs, np.ones(10, dtype=bool), 4, YOUNG, COUNTS, 0.25, np.random.default_rng(1))
    assert got[0] == 8 and got[-1] in (7, 9)


def test_settings_come_from_the_campaign_over_the_solution_over_the_defaults() -> None:
    assert exploration_of({}, None) == Exploration(0.3, 30.0)
    trained = {"exploration_weight": "0.1", "exploration_item_age_cut_off": "7", "hidden_dimension": "64"}
    assert exploration_of(trained, None) == Exploration(0.1, 7.0)
    assert exploration_of(trained, {"explorationWeight": "0.9"}) == Exploration(0.9, 7.0)


@pytest.mark.parametrize(("config", "message"), [
    ({"explorationWeight": "1.5"}, "explorationWeight must be between 0 and 1"),
    ({"explorationWeight": "lots"}, "explorationWeight must be a number"),
    ({"explorationItemAgeCutOff": "0"}, "explorationItemAgeCutOff must be a positive number of days"),
    ({"exploration_weight": "0.5"}, "exploration_weight is not an exploration setting; use explorationWei"),
])
def test_bad_settings_are_named(config: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_exploration(config)


def test_a_promotion_takes_its_share_of_slots_in_its_own_order() -> None:
    from serving.ranking import promote
    allowed, promotable = np.ones(10, dtype=bool), np.zeros(10, dtype=bool)
    promotable[[4, 6, 8, 9]] = True  # e.g. the in-house titles
    positions = set()
    for seed in range(50):
        codes, promoted = promote(PROBS, allowed, promotable, 5, 40, np.random.default_rng(seed))
        assert len(codes) == 5 and promoted.sum() == 2 and len(set(codes.tolist())) == 5
        assert codes[promoted].tolist() == [4, 6]  # the best two promotable, best first
        assert codes[~promoted].tolist() == [0, 1, 2]  # relevance fills the rest, in order
        positions.add(tuple(np.flatnonzero(promoted)))
    assert len(positions) > 3  # placed at random


def test_a_promotion_with_too_few_items_shows_what_there_is() -> None:
    from serving.ranking import promote
    promotable = np.zeros(10, dtype=bool)
    promotable[7] = True
    codes, promoted = promote(PROBS, np.ones(10, dtype=bool), promotable, 4, 100, np.random.default_rng(0))
    assert codes[promoted].tolist() == [7] and codes[~promoted].tolist() == [0, 1, 2]
    codes, promoted = promote(PROBS, np.ones(10, dtype=bool), promotable, 4, 1, np.random.default_rng(0))
    assert promoted.sum() == 1  # 1% of 4 slots still promotes one item


def test_a_ranked_list_gets_a_softmax_over_its_own_items_for_hrnn_recipes() -> None:
    logits = np.array([0.5, 2.0, -1.0, 2.0])
    order, probs = rank_list(logits, "aws-hrnn")
    assert order.tolist() == [1, 3, 0, 2]  # best first; the tie keeps the input's order
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert probs.sum() == pytest.approx(1.0)


def test_a_ranked_list_gets_shares_of_its_counts_for_popularity() -> None:
    order, probs = rank_list(np.array([10.0, 30.0, 0.0, 60.0]), "aws-popularity-count")
    assert order.tolist() == [3, 1, 0, 2]
    np.testing.assert_allclose(probs, [0.1, 0.3, 0.0, 0.6])


def test_an_empty_list_ranks_to_nothing() -> None:
    order, probs = rank_list(np.zeros(0), "aws-hrnn")
    assert len(order) == 0 and len(probs) == 0


def test_probabilities_of_some_items_are_their_share_of_the_whole_catalog() -> None:
    scores = np.array([0.5, 2.0, 0.1, 3.0, 1.0], dtype=np.float32)
    codes = np.array([3, 0])
    for recipe in ("aws-hrnn", "aws-user-personalization", "aws-sims", "aws-popularity-count"):
        np.testing.assert_allclose(probabilities(scores, codes, recipe), normalise(scores, recipe)[codes],
                                   rtol=1e-6)
