"""Rows becoming interactions: an event without an item is kept downstream, never trained on."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from support import archived

from kernel.contract import MANIFEST_VERSION, Event
from kernel.datasets import interactions_from_events
from training.interactions import from_table, typed_history, with_items
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


def test_the_typed_history_keeps_the_newest_of_each_event_type_from_every_row() -> None:
    rows = [("u", f"i{n}", n, "Watch") for n in range(5)] + [("u", "i0", 10, "click")] + \
        [("v", f"i{n}", n, "click") for n in range(1, 5)] + [("w", "i2", 4, None)]
    users, items, times, types = zip(*rows, strict=True)
    table = pa.table({"USER_ID": users, "ITEM_ID": items, "TIMESTAMP": times, "EVENT_TYPE": types})
    data = from_table(table, event_type="click")  # the solution trains on clicks alone
    assert data.user_ids.tolist() == ["u", "v"]
    later = pa.table({"USER_ID": ["v"], "ITEM_ID": ["new"], "TIMESTAMP": [5], "EVENT_TYPE": ["click"]})
    typed = typed_history(pa.concat_tables([table, later]), data, keep=3)
    assert typed.user_ids.tolist() == ["u", "v", "w"]  # w never clicked: known to filters all the same
    names = typed.type_names.tolist()

    def of(user: int) -> list[tuple[str, str]]:
        a, b = typed.offsets[user], typed.offsets[user + 1]
        return [(data.item_ids[i], names[t]) for i, t in zip(typed.items[a:b], typed.types[a:b], strict=True)]
    # the newest 3 of each type, in time order; types lower-cased, a missing one ""
    assert of(0) == [("i2", "watch"), ("i3", "watch"), ("i4", "watch"), ("i0", "click")]
    assert of(1) == [("i2", "click"), ("i3", "click"), ("i4", "click")]  # "new": the model lacks it
    assert of(2) == [("i2", "")]
    assert typed.offsets.tolist() == [0, 4, 7, 8]


async def test_a_trained_artifact_gives_filters_every_event_type_of_a_user(trainer: Trainer) -> None:
    from serving.models import load
    from stream.session import Interaction

    clicks = [event(u * 10 + i, u, f"i{(u + i) % 7}") for u in range(30) for i in range(3)]
    watched = [event(1000 + n, 0, "i6").model_copy(update={
        "event_type": "watch", "user_id": "u0" if n == 0 else "only-watched"}) for n in range(2)]
    await archived(trainer.data_dir, clicks + watched)
    out = trainer.train(version_arn="arn:aws:personalize:us-east-1:000000000000:solution/s/v1",
                        dataset_group="shop", recipe_arn=POPULARITY, hyperparameters={}, event_type="click",
                        event_value_threshold=None, parent=None, progress=lambda **_: None)
    artifact = trainer.data_dir / out["artifact"]
    assert json.loads((artifact / "manifest.json").read_text())["version"] == MANIFEST_VERSION
    model = load("v1", artifact)
    code = model.index
    later = [Interaction("i5", "Purchase", 2e9)]  # streamed after training
    assert model.history("u0", later).typed() == [
        (code["i0"], "click"), (code["i1"], "click"), (code["i2"], "click"), (code["i6"], "watch"),
        (code["i5"], "Purchase")]
    assert model.history("only-watched", []).typed() == [(code["i6"], "watch")]
    assert len(model.history("only-watched", [])) == 0  # no history for the model: it trained on clicks
    assert model.history("stranger", later).typed() == [(code["i5"], "Purchase")]
