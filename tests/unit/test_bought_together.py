"""Frequently bought together: what lands in one basket, not what one customer buys over a year.

The trainer hands `fit` only the use case's Purchase rows (co-views never reach it), so these
stories are told in purchases alone: a session is one customer's run of purchases with no gap
over half an hour.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from training import bought_together
from training.bought_together import fit, pairs_within
from training.interactions import Interactions, from_table

MINUTE, WEEK = 60, 7 * 86400


def purchases(*rows: tuple[str, str, int]) -> Interactions:
    """(customer, item, seconds) per purchase."""
    u, i, t = zip(*rows, strict=True)
    return from_table(pa.table({"USER_ID": list(u), "ITEM_ID": list(i), "TIMESTAMP": list(t)}))


def bought_with(d: Interactions, item: str, **params: str) -> dict[str, float]:
    m = fit(d, params, k=5)
    row = int(np.flatnonzero(d.item_ids == item)[0])
    return {d.item_ids[c]: float(s) for c, s in zip(m.codes[row], m.sims[row], strict=True) if c >= 0}


def test_items_in_one_basket_are_bought_together_a_purchase_a_week_later_is_not() -> None:
    d = purchases(("ann", "tent", 0), ("ann", "pegs", 2 * MINUTE), ("ann", "mallet", 5 * MINUTE),
                  ("ann", "sunscreen", WEEK))
    assert set(bought_with(d, "tent")) == {"pegs", "mallet"}
    assert bought_with(d, "sunscreen") == {}


def test_a_session_goes_on_while_no_gap_exceeds_the_session_gap() -> None:
    # each purchase within 30 minutes of the last: one basket, though the first and last are an hour apart
    d = purchases(("ann", "a", 0), ("ann", "b", 30 * MINUTE), ("ann", "c", 60 * MINUTE),
                  ("ann", "d", 90 * MINUTE + 1))
    assert set(bought_with(d, "a")) == {"b", "c"}
    assert set(fit(d, {}, k=5, session_gap_s=10 * MINUTE).codes.ravel()) == {-1}  # every purchase alone


def test_two_customers_buying_at_the_same_moment_share_no_basket() -> None:
    d = purchases(("ann", "tent", 0), ("bob", "kettle", 0))
    assert bought_with(d, "tent") == {}


def test_a_pair_counts_once_per_session_and_popular_partners_are_discounted() -> None:
    # pegs: bought with the tent in 2 of its 2 sessions; torch: in 3 of its 9 sessions (popular)
    rows = [("ann", "tent", 0), ("ann", "pegs", 1), ("ann", "pegs", 2), ("ann", "torch", 3),
            ("bob", "tent", 0), ("bob", "pegs", 1), ("bob", "torch", 2),
            ("cat", "tent", 0), ("cat", "torch", 1)]
    rows += [(f"x{n}", "torch", 0) for n in range(6)]
    d = purchases(*rows)
    got = bought_with(d, "tent")  # tent: 3 sessions
    assert got["pegs"] == pytest.approx(2 / math.sqrt(3 * 2))  # ann's two pegs count once
    assert got["torch"] == pytest.approx(3 / math.sqrt(3 * 9))
    assert list(bought_with(d, "tent", popularity_discount_factor="0")) == ["torch", "pegs"]  # raw counts
    assert list(bought_with(d, "tent", popularity_discount_factor="1")) == ["pegs", "torch"]  # lift


def test_one_basket_is_enough_for_a_pair() -> None:
    d = purchases(("ann", "tent", 0), ("ann", "pegs", 1))
    assert bought_with(d, "pegs") == {"tent": pytest.approx(1.0)}


def test_a_huge_basket_is_no_basket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bought_together, "MAX_BASKET", 3)
    reseller = [("shop", f"i{n}", n) for n in range(4)]
    d = purchases(*reseller, ("ann", "i0", 0), ("ann", "i1", 1))
    assert bought_with(d, "i0") == {"i1": pytest.approx(1.0)}  # ann's basket only: the reseller's 4 are out


def test_neighbours_best_first_ties_by_code_and_popularity_counts_rows() -> None:
    d = purchases(("ann", "a", 0), ("ann", "b", 1), ("ann", "c", 2), ("ann", "c", 3))
    m = fit(d, {}, k=3)
    code = {x: c for c, x in enumerate(d.item_ids)}
    assert m.codes[code["a"]].tolist() == [code["b"], code["c"], -1]
    assert m.popularity.tolist() == [1.0, 1.0, 2.0]
    assert m.codes.dtype == np.int32 and m.sims.dtype == np.float32 and m.codes.shape == (3, 3)


def test_pairs_within_lists_every_ordered_pair_of_a_session() -> None:
    left, right = pairs_within(np.array([0, 0, 0, 1, 2, 2]))
    assert sorted(zip(left.tolist(), right.tolist(), strict=True)) == [
        (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (4, 5), (5, 4)]


def test_no_purchases_and_unknown_hyperparameters() -> None:
    d = purchases(("ann", "a", 0)).take(np.zeros(1, dtype=bool))
    assert fit(d, {}, k=2).codes.shape == (1, 2)
    with pytest.raises(ValueError, match="min_cointeraction_count"):
        fit(purchases(("ann", "a", 0)), {"min_cointeraction_count": "2"})
