"""Which records a batch of the archive writer may commit: the gapless run from the offset the
archive holds, so records a consumer fetched before a seek never land twice or out of turn."""
from __future__ import annotations

from stream.archive_writer import contiguous


def test_a_batch_commits_up_to_its_first_gap() -> None:
    assert contiguous([5, 6, 7], 5) == 8
    assert contiguous([5, 6, 8, 9], 5) == 7  # 7 missing: 8 and 9 are read again after it
    assert contiguous([7, 8], 5) == 5  # nothing from 5: all of it is read again


def test_records_fetched_before_a_seek_back_are_not_stored_twice() -> None:
    # a rebalance sought the partition back to 100 while 120-129 were in flight: they arrive,
    # then 100-124 again; the batch commits 100-129 once
    fetched = [*range(120, 130), *range(100, 125)]
    assert contiguous(fetched, 100) == 130
    assert contiguous(fetched, 126) == 130 and contiguous(fetched, 130) == 130
