"""aws-sims on tiny hand-made histories: the popularity discount and the co-interaction minimum."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from training.interactions import Interactions, from_table
from training.sims import fit

NO_TRIM = {"min_user_history_length_percentile": "0", "max_user_history_length_percentile": "1",
           "min_item_interaction_count_percentile": "0", "max_item_interaction_count_percentile": "1"}


def data(histories: dict[str, str]) -> Interactions:
    """One user per key; each character of the value is an item, in time order."""
    rows = [(u, i, t) for u, items in histories.items() for t, i in enumerate(items)]
    u, i, t = zip(*rows, strict=True)
    return from_table(pa.table({"USER_ID": list(u), "ITEM_ID": list(i), "TIMESTAMP": list(t)}))


# a: 4 users. p (popular, 10 users) shares 3 of them with a, r (rare, 2 users) shares 2.
D = data({"u1": "apr", "u2": "apr", "u3": "ap", "u4": "a", **{f"x{n}": "p" for n in range(7)}})


def neighbours_of(d: Interactions, item: str, **params: str) -> list[tuple[str, float]]:
    m = fit(d, NO_TRIM | {"min_cointeraction_count": "1"} | params)
    codes, sims = m.neighbours(k=3)
    row = int(np.flatnonzero(d.item_ids == item)[0])
    return [(d.item_ids[c], float(s)) for c, s in zip(codes[row], sims[row], strict=True) if c >= 0]


def test_discount_zero_ranks_by_co_count_one_by_lift() -> None:
    assert [n for n, _ in neighbours_of(D, "a", popularity_discount_factor="0")] == ["p", "r"]
    assert [n for n, _ in neighbours_of(D, "a", popularity_discount_factor="1")] == ["r", "p"]


def test_default_discount_is_cosine() -> None:
    got = dict(neighbours_of(D, "a"))
    assert got["p"] == pytest.approx(3 / math.sqrt(4 * 10))
    assert got["r"] == pytest.approx(2 / math.sqrt(4 * 2))


def test_min_cointeraction_count_drops_rarer_pairs() -> None:
    assert [n for n, _ in neighbours_of(D, "a", min_cointeraction_count="3")] == ["p"]
    assert neighbours_of(D, "r", min_cointeraction_count="3") == []
    assert [n for n, _ in neighbours_of(D, "r", min_cointeraction_count="2")] == ["a", "p"]


def test_repeat_interactions_count_once() -> None:
    d = data({"u1": "aab", "u2": "ab"})
    assert neighbours_of(d, "a", popularity_discount_factor="0") == [("b", 2.0)]


def test_max_item_percentile_trims_the_most_popular_item() -> None:
    assert [n for n, _ in neighbours_of(D, "a", max_item_interaction_count_percentile="0.5")] == ["r"]


def test_scores_last_item_neighbours_then_popularity() -> None:
    m = fit(D, NO_TRIM | {"min_cointeraction_count": "1"})
    code = {name: c for c, name in enumerate(D.item_ids)}
    s = m.score(np.array([0, 1]), [np.array([code["p"], code["r"]]), np.array([], np.int32)], [])
    assert [D.item_ids[c] for c in np.argsort(-s[0])] == ["a", "p", "r"]  # r's neighbours: a, p
    assert [D.item_ids[c] for c in np.argsort(-s[1], kind="stable")] == ["p", "a", "r"]  # popularity


def test_neighbours_refuses_more_than_fitted_and_unknown_params() -> None:
    with pytest.raises(ValueError):
        fit(D, k=2).neighbours(k=3)
    with pytest.raises(ValueError):
        fit(D, {"no_such": "1"})
