"""Popularity and decayed trending, computed by hand."""
from __future__ import annotations

import pytest

from kernel.contract import Event
from stream.counters import (
    EPOCH_HALF_LIVES,
    epoch,
    increments,
    top,
    trending_counters,
    trending_name,
    trending_scores,
)

H = 100.0  # half-life, seconds
SPAN = EPOCH_HALF_LIVES * H


def ev(item: str | None, t: float, etype: str = "click") -> Event:
    return Event(event_id=f"{item}{t}", dataset_group="g", tracking_id="t", user_id="u",
                 session_id="s", event_type=etype, item_id=item, sent_at=t, received_at=0)


def test_popularity_counts_items_and_items_per_event_type() -> None:
    inc = increments([ev("a", 0), ev("a", 1, "buy"), ev("b", 2), ev(None, 3)], H)
    assert inc[("g", "popularity")] == {"a": 2.0, "b": 1.0}
    assert inc[("g", "popularity:click")] == {"a": 1.0, "b": 1.0}
    assert inc[("g", "popularity:buy")] == {"a": 1.0}


def test_trending_weights_double_every_half_life_within_an_epoch() -> None:
    start = 10 * SPAN
    inc = increments([ev("a", start), ev("b", start + H), ev("b", start + 2 * H)], H)
    assert inc[("g", trending_name(10))] == {"a": 1.0, "b": 2.0 + 4.0}


def test_reading_decays_scores_so_an_event_now_counts_one() -> None:
    start = 10 * SPAN
    raw = increments([ev("a", start + H), ev("b", start + 3 * H)], H)[("g", trending_name(10))]
    now = start + 3 * H
    assert trending_counters(now, H) == (trending_name(10), trending_name(9))
    assert trending_scores(raw, {}, now, H) == pytest.approx({"a": 0.25, "b": 1.0})


def test_previous_epoch_still_counts_across_the_boundary() -> None:
    last_old = 11 * SPAN - H  # one half-life before epoch 11 starts
    old = increments([ev("a", last_old)], H)[("g", trending_name(10))]
    new = increments([ev("b", 11 * SPAN)], H)[("g", trending_name(11))]
    assert epoch(11 * SPAN, H) == 11
    assert trending_scores(new, old, 11 * SPAN, H) == pytest.approx({"a": 0.5, "b": 1.0})


def test_top_breaks_ties_by_item_id() -> None:
    assert top({"b": 2.0, "a": 2.0, "c": 3.0, "d": 1.0}, 3) == [("c", 3.0), ("a", 2.0), ("b", 2.0)]
