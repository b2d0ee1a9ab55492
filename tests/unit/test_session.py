"""The session transition, with hand-computed expectations (no services)."""
from __future__ import annotations

from kernel.contract import Event
from stream.session import Interaction, Limits, SessionState, apply


def ev(i: int, item: str | None = "a", *, t: float | None = None, session: str = "s1",
       etype: str = "click", eid: str | None = None) -> Event:
    return Event(event_id=eid or f"e{i}", dataset_group="g", tracking_id="tr", user_id="u",
                 session_id=session, event_type=etype, item_id=item,
                 sent_at=1000.0 + i if t is None else t, received_at=0.0)


def run(*events: Event, limits: Limits | None = None) -> SessionState:
    state = None
    for e in events:
        state = apply(state, e, None, limits or Limits())
    assert state is not None
    return state


def test_first_event_starts_a_session_and_records_the_interaction() -> None:
    s = run(ev(1, "a"))
    assert s.session_id == "s1" and s.sessions == 1 and s.session_start == 1001.0
    assert s.history == (Interaction(item="a", type="click", ts=1001.0),)
    assert s.session_items == ("a",) and s.seen == {"a"} and s.applied == 1
    assert s.last_ts == 1001.0 and s.event_ids == ("e1",)


def test_duplicate_event_id_is_applied_once() -> None:
    once = run(ev(1, "a"), ev(2, "b"))
    twice = run(ev(1, "a"), ev(2, "b"), ev(1, "a"), ev(2, "b"))
    assert twice == once and twice.applied == 2


def test_new_session_id_starts_a_session_but_keeps_history() -> None:
    s = run(ev(1, "a"), ev(2, "b"), ev(3, "c", session="s2"))
    assert s.sessions == 2 and s.session_id == "s2" and s.session_start == 1003.0
    assert s.session_items == ("c",)
    assert [i.item for i in s.history] == ["a", "b", "c"]


def test_inactivity_gap_starts_a_session_within_the_same_session_id() -> None:
    limits = Limits(session_gap_s=60)
    s = run(ev(1, "a", t=0.0), ev(2, "b", t=60.0), ev(3, "c", t=121.0), limits=limits)
    assert s.sessions == 2 and s.session_items == ("c",) and s.session_start == 121.0


def test_late_event_is_recorded_but_does_not_move_the_clock_back() -> None:
    s = run(ev(1, "a", t=500.0), ev(2, "b", t=100.0))
    assert s.last_ts == 500.0 and [i.item for i in s.history] == ["a", "b"] and s.sessions == 1


def test_history_and_dedupe_window_are_capped() -> None:
    limits = Limits(max_history=3, dedupe_window=2)
    s = run(*(ev(i, f"i{i}") for i in range(5)), limits=limits)
    assert [i.item for i in s.history] == ["i2", "i3", "i4"]
    assert s.event_ids == ("e3", "e4")


def test_event_without_item_counts_but_adds_no_interaction() -> None:
    s = run(ev(1, None, etype="page_view"))
    assert s.applied == 1 and s.history == () and s.sessions == 1


class Toy:
    """A recurrent model whose state is the sum of item-id lengths, built from history on demand."""

    def __init__(self, model: str) -> None:
        self.model, self.rebuilt = model, 0

    def rebuild(self, user_key: str, history) -> tuple[float, ...]:  # type: ignore[no-untyped-def]
        self.rebuilt += 1
        return (float(sum(len(i.item) for i in history)),)

    def step(self, h: tuple[float, ...], item_id: str, ts: float) -> tuple[float, ...]:
        return (h[0] + len(item_id),)


def test_the_recurrent_state_follows_the_deployed_model() -> None:
    assert run(ev(1, "abc")).h is None  # no model deployed
    v1 = Toy("v1")
    s = apply(run(ev(1, "ab")), ev(2, "abc"), v1, Limits())  # deployed after "ab": rebuilt, then stepped
    assert s.model == "v1" and s.h == (5.0,) and v1.rebuilt == 1
    s = apply(s, ev(3, "x"), v1, Limits())
    assert s.h == (6.0,) and v1.rebuilt == 1  # stepped, not rebuilt
    assert apply(s, ev(3, "x"), v1, Limits()) is s  # a duplicate changes nothing
    v2 = Toy("v2")
    s = apply(s, ev(4, "yy"), v2, Limits())  # a new version: rebuilt from the history, not served stale
    assert s.model == "v2" and s.h == (8.0,) and v2.rebuilt == 1
    assert apply(s, ev(5, None, etype="page_view"), v2, Limits()).h == (8.0,)  # no item: no step


def anon(i: int, item: str, session: str = "web-9") -> Event:
    return Event(event_id=f"a{i}", dataset_group="g", tracking_id="tr", user_id=None, session_id=session,
                 event_type="click", item_id=item, sent_at=2000.0 + i, received_at=0.0)


def test_signing_in_mid_session_brings_the_anonymous_clicks_along() -> None:
    before = run(ev(1, "old"))  # the user's history from an earlier visit
    visitor = run(anon(1, "x"), anon(2, "y"))  # kept under the sessionId while anonymous
    signed_in = ev(3, "z", t=2003.0, session="web-9")
    s = apply(before, signed_in, None, Limits(), anonymous=visitor)
    assert [i.item for i in s.history] == ["old", "x", "y", "z"]
    assert s.session_id == "web-9" and s.session_items == ("x", "y", "z") and s.session_start == 2001.0
    assert s.sessions == 2 and s.applied == 2 and s.model is None
    # later events of that session append; the anonymous clicks are not merged again
    s = apply(s, ev(4, "w", t=2004.0, session="web-9"), None, Limits(), anonymous=visitor)
    assert [i.item for i in s.history] == ["old", "x", "y", "z", "w"]


def test_no_stitching_without_a_matching_anonymous_session() -> None:
    plain = apply(None, ev(1, "a", session="web-1"), None, Limits())
    assert apply(None, ev(1, "a", session="web-1"), None, Limits(),
                 anonymous=run(anon(1, "x", session="web-2"))) == plain
    # a client that uses the userId as its sessionId: its own state is no anonymous visitor
    own = run(ev(1, "a", session="u"))
    gap = ev(2, "b", t=1001.0 + 3600, session="u")
    assert apply(own, gap, None, Limits(), anonymous=own) == apply(own, gap, None, Limits())


def test_training_data_stitches_anonymous_events_to_the_user_who_signed_in() -> None:
    from kernel.datasets import interactions_from_events
    rows = interactions_from_events([anon(1, "x"), anon(2, "y", session="web-other"),
                                     ev(3, "z", session="web-9")]).to_pydict()
    assert rows["USER_ID"] == ["u", "web-other", "u"] and rows["ITEM_ID"] == ["x", "y", "z"]
