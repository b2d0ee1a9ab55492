"""Evaluation splits on hand-made interactions: what is held out, what stays in train."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from training.interactions import Interactions, from_table
from training.split import leave_last_out, personalize_split


def data(rows: list[tuple[str, str, int]]) -> Interactions:
    u, i, t = zip(*rows, strict=True)
    return from_table(pa.table({"USER_ID": list(u), "ITEM_ID": list(i), "TIMESTAMP": list(t)}))


def names(d: Interactions, codes: np.ndarray) -> list[str]:
    return d.item_ids[codes].tolist()


def test_leave_last_out_holds_out_the_latest_row_ties_in_file_order() -> None:
    d = data([("u", "b", 2), ("u", "a", 1), ("u", "c", 2), ("v", "x", 5), ("w", "y", 1), ("w", "z", 0)])
    s = leave_last_out(d)
    assert d.user_ids[s.users].tolist() == ["u", "w"]  # v has one interaction: train only
    assert [names(d, h) for h in s.held_out] == [["c"], ["y"]]  # b and c tie at t=2: c comes later
    assert [names(d, h) for h in s.history] == [["a", "b"], ["z"]]
    assert [t.tolist() for t in s.history_time] == [[1, 2], [0]]
    assert sorted(names(d, s.train.item)) == ["a", "b", "x", "z"]


def test_personalize_split_holds_out_the_latest_tenth_of_sampled_users() -> None:
    rows = [(f"u{n:02d}", f"i{k}", k) for n in range(20) for k in range(5 + n)]  # lengths 5..24
    rows += [("solo", "i0", 0)]
    d = data(rows)
    s = personalize_split(d, test_user_fraction=0.1, holdout_fraction=0.1, seed=3)
    assert len(s.users) == 2 and "solo" not in d.user_ids[s.users]
    lengths = np.diff(d.offsets)[s.users]
    for n, hist, held, t in zip(lengths, s.history, s.held_out, s.history_time, strict=True):
        assert len(held) == max(1, n // 10)  # floor of 10%, at least one
        assert len(hist) + len(held) == n
        assert np.all(np.diff(t) >= 0) and names(d, held) == [f"i{k}" for k in range(len(hist), n)]
    assert len(s.train) == len(d) - sum(map(len, s.held_out))  # test users' input rows stay in train
    again = personalize_split(d, seed=3)
    assert again.users.tolist() == s.users.tolist()


def test_personalize_split_tests_at_least_one_user_and_keeps_one_input_row() -> None:
    d = data([("a", "x", 0), ("a", "y", 1), ("b", "x", 0)])
    s = personalize_split(d, test_user_fraction=0.01, holdout_fraction=0.9)
    assert d.user_ids[s.users].tolist() == ["a"]
    assert names(d, s.history[0]) == ["x"] and names(d, s.held_out[0]) == ["y"]


def test_impressions_follow_their_rows_through_sorting_splits_and_recoding() -> None:
    from training.interactions import recode_items
    d = from_table(pa.table({"USER_ID": ["u", "u", "v"], "ITEM_ID": ["b", "a", "a"], "TIMESTAMP": [2, 1, 5],
                             "IMPRESSION": ["b|a|never-clicked", None, "a|b"]}))
    shown = [[d.item_ids[c] for c in row if c >= 0] for row in d.impressions]
    assert shown == [[], ["b", "a"], ["a", "b"]]  # rows sorted by user and time; unknown items dropped
    one = d.take(np.array([1]))
    assert [[d.item_ids[c] for c in row if c >= 0] for row in one.impressions] == [["b", "a"]]
    r = recode_items(d, np.asarray(["z", "b"], dtype=object))
    assert [[r.item_ids[c] for c in row if c >= 0] for row in r.impressions] == shown
    assert from_table(pa.table({"USER_ID": ["u"], "ITEM_ID": ["a"], "TIMESTAMP": [1],
                                "IMPRESSION": pa.array([None], pa.string())})).impressions is None
