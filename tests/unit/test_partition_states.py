"""What a stream worker keeps of the states it stored: valid while the store's stamp is its own,
dropped per partition when it is not, and bounded."""
from __future__ import annotations

from stream.partition_states import PartitionStates
from stream.session import SessionState

A, B = SessionState(applied=1), SessionState(applied=2)


def test_kept_states_serve_while_the_stamp_is_the_one_saved() -> None:
    kept = PartitionStates()
    kept.keep("t:0", (9, None), {("g", "a"): A, ("g", "new"): None})
    assert kept.kept("t:0", [("g", "a"), ("g", "new"), ("g", "other")]) == {("g", "a"): A, ("g", "new"): None}
    assert kept.still("t:0", (9, None))
    assert kept.kept("t:1", [("g", "a")]) == {}  # another partition's users are not this one's


def test_another_stamp_drops_the_partitions_states_only() -> None:
    kept = PartitionStates()
    kept.keep("t:0", (9, None), {("g", "a"): A})
    kept.keep("t:1", (4, None), {("g", "b"): B})
    assert not kept.still("t:0", (12, None))  # another worker wrote since
    assert kept.kept("t:0", [("g", "a")]) == {} and kept.kept("t:1", [("g", "b")]) == {("g", "b"): B}
    assert not kept.still("t:1", (4, 1))  # an erasure ran on the group
    kept.keep("t:0", (12, None), {("g", "a"): B})
    assert kept.still("t:0", (12, None)) and kept.kept("t:0", [("g", "a")]) == {("g", "a"): B}


def test_the_least_recently_used_go_first() -> None:
    kept = PartitionStates(max_users=2)
    kept.keep("t:0", (1, None), {("g", "a"): A, ("g", "b"): B})
    kept.kept("t:0", [("g", "a")])  # a is used: b is the oldest now
    kept.keep("t:0", (2, None), {("g", "c"): A})
    assert set(kept.kept("t:0", [("g", "a"), ("g", "b"), ("g", "c")])) == {("g", "a"), ("g", "c")}
