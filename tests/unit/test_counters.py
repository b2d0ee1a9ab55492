"""Popularity counts, computed by hand."""
from __future__ import annotations

from kernel.contract import Event
from stream.counters import increments, top


def ev(item: str | None, t: float, etype: str = "click") -> Event:
    return Event(event_id=f"{item}{t}", dataset_group="g", tracking_id="t", user_id="u",
                 session_id="s", event_type=etype, item_id=item, sent_at=t, received_at=0)


def test_popularity_counts_items_and_items_per_event_type() -> None:
    inc = increments([ev("a", 0), ev("a", 1, "buy"), ev("b", 2), ev(None, 3)])
    assert inc[("g", "popularity")] == {"a": 2.0, "b": 1.0}
    assert inc[("g", "popularity:click")] == {"a": 1.0, "b": 1.0}
    assert inc[("g", "popularity:buy")] == {"a": 1.0}


def test_top_breaks_ties_by_item_id() -> None:
    assert top({"b": 2.0, "a": 2.0, "c": 3.0, "d": 1.0}, 3) == [("c", 3.0), ("a", 2.0), ("b", 2.0)]
