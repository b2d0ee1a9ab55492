"""The v2 recipes' event context: each event's INTERACTIONS categorical fields (DEVICE) add a
learnt vector to the state that scores it, so the same history gets different lists on a phone
and on a desktop, in torch and in the exported runtime; PutEvents' properties carry it too."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kernel.artifact_files import COMMON
from kernel.contract import Event
from kernel.datasets import interactions_from_events
from kernel.hrnn_runtime import HRNNRuntime
from training import hrnn
from training.interactions import Interactions, from_table
from training.trainer import context_fields

TINY = {"hidden_dimension": "16", "epochs": "8", "batch_size": "16", "learning_rate": "0.02",
        "dropout": "0.0", "recency_mask": "false", "max_user_history_length_percentile": "1.0"}
ON = {"phone": [f"A{i}" for i in range(5)], "desktop": [f"B{i}" for i in range(5)]}


def devices(n_users: int, seed: int, values: tuple[str, ...] = ("phone", "desktop")) -> Interactions:
    """Every user picks an A item on a phone and a B item on a desktop, the device at random."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"USER_ID": [], "ITEM_ID": [], "TIMESTAMP": [], "DEVICE": []}
    for u in range(n_users):
        for k in range(12):
            device = str(rng.choice(values))
            rows["USER_ID"].append(f"u{u}")
            rows["ITEM_ID"].append(str(rng.choice(ON.get(device, ON["phone"]))))
            rows["TIMESTAMP"].append(1_000_000 + 100_000 * u + 60 * k)
            rows["DEVICE"].append(device)
    table = pa.table({k: pa.array(v, pa.int64() if k == "TIMESTAMP" else pa.string())
                      for k, v in rows.items()})
    assert context_fields(table) == ["DEVICE"]
    return from_table(table, context=context_fields(table))


@pytest.fixture(scope="module")
def model() -> hrnn.HRNN:
    return hrnn.fit(devices(100, seed=0), TINY)


HISTORY = ["A0", "B1", "A2", "B3"]


def scores(model: hrnn.HRNN, context: dict[str, str] | None) -> dict[str, float]:
    code = {v: i for i, v in enumerate(model.item_ids)}
    got = model.score(np.arange(1), [np.array([code[i] for i in HISTORY])], [np.arange(len(HISTORY)) * 60],
                      context)[0]
    return {item: float(got[code[item]]) for item in model.item_ids}


def test_the_same_history_is_scored_by_its_device(model: hrnn.HRNN) -> None:
    assert model.context is not None and model.context.fields == ("DEVICE",)
    for device, mine, other in (("phone", "A", "B"), ("desktop", "B", "A")):
        got = scores(model, {"device": device})  # keys match ignoring case
        assert min(v for k, v in got.items() if k[0] == mine) > \
            max(v for k, v in got.items() if k[0] == other)


def test_the_exported_runtime_scores_as_torch(model: hrnn.HRNN, tmp_path: Path) -> None:
    files = model.export(tmp_path)
    assert {"context", "context_tables"} <= files.keys()
    runtime = HRNNRuntime(tmp_path, files)
    assert runtime.context_fields == ("DEVICE",)
    code = {v: i for i, v in enumerate(model.item_ids)}
    hs, _ = runtime.state_of((code[i], 60.0 * t) for t, i in enumerate(HISTORY))
    for context in ({"DEVICE": "phone"}, {"Device": "desktop"}, {"DEVICE": "tv"}, None):
        q = runtime.context_vector(context)
        assert q is not None
        want = scores(model, context)
        got = runtime.scores(hs + q)[0]
        np.testing.assert_allclose(got, [want[i] for i in model.item_ids], atol=1e-4)
    assert np.array_equal(runtime.context_vector({"DEVICE": "tv"}), runtime.context_vector({}))  # unknown


def test_an_update_keeps_the_values_and_learns_new_ones(model: hrnn.HRNN, tmp_path: Path) -> None:
    (tmp_path / COMMON["item_ids"]).write_text(json.dumps(model.item_ids.tolist()))  # the vocabulary
    parent = hrnn.load_for_update(tmp_path, model.export(tmp_path))
    assert parent.context == model.context
    more = devices(30, seed=1, values=("tablet", "phone"))
    child = hrnn.fit(more, {"update_epochs": "1"}, parent=parent, since=0)
    assert child.context is not None and child.context.values[0][:2] == model.context.values[0]
    assert child.context.values[0][2:] == ("tablet",)
    q, old = child.weights["Q_DEVICE"], model.weights["Q_DEVICE"]
    assert q.shape == (4, old.shape[1])  # missing, phone, desktop, tablet


def test_put_events_properties_are_the_context() -> None:
    def event(n: int, properties: dict[str, object] | None) -> Event:
        return Event(event_id=str(n), dataset_group="g", tracking_id="t", user_id="u", session_id="s",
                     event_type="click", item_id="A0", properties=properties, sent_at=n, received_at=n)
    table = interactions_from_events([event(1, {"device": "phone"}), event(2, None),
                                      event(3, {"Device": "desktop", "other": 1})], ["DEVICE"])
    assert table["DEVICE"].to_pylist() == ["phone", None, "desktop"]
    data = from_table(table, context=["DEVICE"])
    assert data.context is not None and data.context_fields == ("DEVICE",)
    assert [data.context_values[0][c - 1] if c else None for c in data.context[:, 0]] == \
        ["phone", None, "desktop"]
