"""Rows becoming interactions: an event without an item is kept downstream, never trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from stream.archive import Archive
from stream.contract import Event
from stream.datasets import interactions_from_events
from training.interactions import from_table, with_items
from training.trainer import Trainer

POPULARITY = "arn:aws:personalize:::recipe/aws-popularity-count"


def event(n: int, user: int, item: str | None) -> Event:
    return Event(event_id=f"e{n}", dataset_group="shop", tracking_id="t", user_id=f"u{user}",
                 session_id=f"s{user}", event_type="click", item_id=item, sent_at=1_700_000_000.0 + n,
                 received_at=0.0)


def test_rows_without_an_item_are_counted_and_left_out_of_the_codes() -> None:
    table = pa.table({"USER_ID": ["u", "u", "v", "v"], "ITEM_ID": ["a", None, None, "b"],
                      "TIMESTAMP": [1, 2, 3, 4]})
    named, left_out = with_items(table)
    assert (named.num_rows, left_out) == (2, 2)
    d = from_table(table)  # a null item once became code -1 and broke every recipe
    assert d.item_ids.tolist() == ["a", "b"] and d.item.min() >= 0 and len(d) == 2


def test_an_event_without_an_item_stays_a_row_with_an_empty_item() -> None:
    table = interactions_from_events([event(0, 0, "a"), event(1, 0, None)])
    assert table["ITEM_ID"].to_pylist() == ["a", None]


@pytest.fixture
def trainer(tmp_path: Path) -> Trainer:
    return Trainer(tmp_path, min_interactions=10)


async def archived(data_dir: Path, events: list[Event]) -> None:
    archive = Archive(data_dir / "archive")
    await archive.start()
    try:
        assert (await archive.add(events)).new == len(events)
    finally:
        await archive.close()


async def test_training_skips_events_without_an_item_and_says_how_many(trainer: Trainer) -> None:
    clicks = [event(u * 10 + i, u, f"i{(u + i) % 7}") for u in range(30) for i in range(3)]
    views = [event(1000 + u, u, None) for u in range(12)]
    await archived(trainer.data_dir, clicks + views)
    out = trainer.train(version_arn="arn:aws:personalize:us-east-1:000000000000:solution/s/v1",
                        dataset_group="shop", recipe_arn=POPULARITY, hyperparameters={}, event_type=None,
                        event_value_threshold=None, parent=None, progress=lambda **_: None)
    assert out["interactions"] == len(clicks) and out["skippedInteractions"] == {"withoutItemId": 12}
    items = (trainer.data_dir / out["artifact"] / "item_ids.json").read_text()
    assert "null" not in items


async def test_too_few_items_fails_for_that_and_names_what_was_left_out(trainer: Trainer) -> None:
    await archived(trainer.data_dir, [event(0, 0, "a")] + [event(n, n, None) for n in range(1, 20)])
    data, skipped = trainer.interactions("shop", None, None)
    assert np.all(data.item >= 0) and skipped == {"withoutItemId": 19}
    with pytest.raises(ValueError, match=r"found 1; 19 more left out \(withoutItemId\)"):
        trainer.check_enough(data, None, skipped)
