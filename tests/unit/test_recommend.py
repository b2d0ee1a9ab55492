"""serving.recommend's steps on a small in-memory model: what a request gets, with no I/O."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from serving.exclusions import Allowed, Exclusions
from serving.models import Model
from serving.ranking import Exploration
from serving.recommend import (
    RELATED_ITEMS,
    USER_PERSONALIZATION,
    Promotion,
    User,
    excluded,
    rank,
    recommend,
)
from stream.live_state import NO_PAST, UserHistory

ITEMS = ["a", "b", "c", "d", "e", "f"]
COUNTS = np.array([6, 5, 4, 3, 2, 1], dtype=np.float32)
DAY = 86_400


def model(**extra: Any) -> Model:
    """Popularity over six items; user "u" interacted with a and b."""
    known = UserHistory(ITEMS, ["u"], {"offsets": np.array([0, 2]), "items": np.array([0, 1]),
                                       "times": np.array([1.0, 2.0])}, data_cut=2)
    return Model(arn="m", recipe="aws-popularity-count", known=known, popularity=COUNTS, **extra)


def user(m: Model) -> User:
    return User("u", m.history("u", ()))


def everything(m: Model, codes: Sequence[int] = (), allowed: Allowed | None = None) -> Exclusions:
    return Exclusions.of(m.n_items, codes, allowed)


def test_the_top_k_keeps_what_the_user_interacted_with_and_scores_are_shares_of_the_catalog() -> None:
    m = model()
    items = recommend(m, USER_PERSONALIZATION, user(m), None, everything(m), 3)
    assert [i["itemId"] for i in items] == ["a", "b", "c"]  # a and b seen, still recommended
    assert [i["score"] for i in items] == [round(c / COUNTS.sum(), 7) for c in (6.0, 5.0, 4.0)]
    assert all("promotionName" not in i for i in items)


def test_a_filter_leaves_only_the_items_it_allows() -> None:
    m = model()
    allowed = Allowed.of(np.array([False, True, False, True, False, True]))
    items = recommend(m, USER_PERSONALIZATION, user(m), None, everything(m, allowed=allowed), 5)
    assert [i["itemId"] for i in items] == ["b", "d", "f"]


def test_related_items_exclude_the_item_asked_about_and_put_its_neighbours_first() -> None:
    m = model(neighbours=np.array([[4, -1]] * 6, dtype=np.int32),
              similarities=np.array([[0.5, 0.0]] * 6, dtype=np.float32))
    code = m.index["a"]
    exclusions = everything(m, excluded(RELATED_ITEMS, code))
    items = recommend(m, RELATED_ITEMS, User(None, NO_PAST), code, exclusions, 3)
    assert [i["itemId"] for i in items] == ["e", "b", "c"]
    unknown = recommend(m, RELATED_ITEMS, User(None, NO_PAST), None, everything(m), 2)  # popular items
    assert [i["itemId"] for i in unknown] == ["a", "b"]


def test_only_related_items_exclude_an_item_by_itself() -> None:
    assert excluded(RELATED_ITEMS, 3).tolist() == [3]
    assert excluded(RELATED_ITEMS, None).tolist() == []
    assert excluded(USER_PERSONALIZATION, 3).tolist() == []


def test_a_promotion_takes_its_share_of_slots_for_the_items_its_filter_allows() -> None:
    m = model()
    promotable = Allowed.of(np.array([False, False, False, False, True, True]))
    promotion = Promotion("new", 50, promotable)
    items = recommend(m, USER_PERSONALIZATION, user(m), None, everything(m), 4, promotion=promotion,
                      rng=np.random.default_rng(0))
    promoted = [i["itemId"] for i in items if i.get("promotionName") == "new"]
    assert promoted == ["e", "f"]  # 50% of 4, the best promotable first
    assert [i["itemId"] for i in items if "promotionName" not in i] == ["a", "b"]
    assert all("promotionName" not in i or i["itemId"] in promoted for i in items)


def test_exploration_gives_young_items_their_share() -> None:
    created = np.array([0, 0, 0, 0, 100 * DAY, 100 * DAY])  # e and f are young
    m = model(created=created, data_cut=100 * DAY)
    items = recommend(m, USER_PERSONALIZATION, user(m), None, everything(m), 4,
                      exploration=Exploration(weight=0.5, age_cut_off_days=1), rng=np.random.default_rng(0))
    ids = [i["itemId"] for i in items]
    assert ids[0] == "a" and sorted(ids) == ["a", "b", "e", "f"]


@pytest.mark.parametrize("allowed", [None, Allowed.of(np.array([True, False, True, True, True, True]))])
def test_rank_orders_known_items_normalised_over_them_and_puts_unknown_ones_last(
        allowed: Allowed | None) -> None:
    m = model()
    items = rank(m, user(m), ["c", "zz", "b", "c", "a"], allowed)
    want = ["a", "b", "c"] if allowed is None else ["a", "c"]
    assert [i["itemId"] for i in items] == [*want, "zz"]
    assert items[-1]["score"] == 0.0
    assert sum(i["score"] for i in items) == pytest.approx(1.0, abs=1e-6)
