"""serving.state_cache: when a cached HRNN state may be reused or resumed, and the LRU."""
from __future__ import annotations

import numpy as np

from serving.state_cache import State, StateCache, covered
from stream.live_state import Past

H = np.zeros((1, 4), dtype=np.float32)


def state(events: list[tuple[int, float]]) -> State:
    return State(len(events), events[-1], H, H)


def past(events: list[tuple[int, float]]) -> Past:
    return Past(np.array([c for c, _ in events], dtype=np.int64), np.array([t for _, t in events]))


def test_the_same_history_is_covered_entirely() -> None:
    ev = [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert covered(state(ev), past(ev), window=200) == 3


def test_a_longer_history_resumes_after_what_is_cached() -> None:
    ev = [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert covered(state(ev[:2]), past(ev), window=200) == 2


def test_a_history_that_changed_before_its_end_is_rerun() -> None:
    ev = [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert covered(state([(1, 10.0), (5, 20.0)]), past(ev), window=200) == 0  # another event at position 2
    assert covered(state(ev + [(4, 40.0)]), past(ev), window=200) == 0  # cached more than there is now
    assert covered(None, past(ev), window=200) == 0
    assert covered(state(ev), past([]), window=200) == 0


def test_past_the_window_only_the_identical_history_is_reused() -> None:
    # the window's first event moves with each new one: resuming would differ from a rerun
    ev = [(i, float(i)) for i in range(6)]
    assert covered(state(ev[:5]), past(ev), window=5) == 0
    assert covered(state(ev), past(ev), window=5) == 6


def test_least_recently_used_users_go_first_and_models_do_not_share() -> None:
    cache = StateCache(2)
    cache.put("m1", "a", state([(1, 1.0)]))
    cache.put("m1", "b", state([(2, 1.0)]))
    assert cache.get("m1", "a") is not None  # a is now the most recent
    cache.put("m1", "c", state([(3, 1.0)]))
    assert cache.get("m1", "b") is None and cache.get("m1", "a") is not None and len(cache) == 2
    assert cache.get("m2", "a") is None


def test_a_zero_capacity_cache_keeps_nothing() -> None:
    cache = StateCache(0)
    cache.put("m", "a", state([(1, 1.0)]))
    assert cache.get("m", "a") is None
