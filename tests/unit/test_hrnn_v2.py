"""The v2 recipes' HRNN: the items' metadata is part of their embeddings, so an item nobody has
interacted with is scored from its genres, in training's metrics and in the exported artifact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kernel.hrnn_runtime import HRNNRuntime
from training import hrnn
from training.interactions import Interactions, from_table, with_catalog

TINY = {"hidden_dimension": "32", "epochs": "10", "batch_size": "16", "learning_rate": "0.01",
        "dropout": "0.0", "recency_mask": "false", "max_user_history_length_percentile": "1.0"}
GENRES = {"comedy": [f"c{i}" for i in range(8)], "horror": [f"h{i}" for i in range(8)]}
NEW = {"comedy": "c-new", "horror": "h-new"}  # in the catalogue, watched by nobody
ITEMS = pa.table({"ITEM_ID": [i for g in GENRES.values() for i in g] + list(NEW.values()),
                  "GENRES": [g for g, items in GENRES.items() for _ in items] + list(NEW)})


def fans(n_users: int, seed: int) -> Interactions:
    """Half the users watch comedies only, half horror only, in random order."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"USER_ID": [], "ITEM_ID": [], "TIMESTAMP": []}
    for u in range(n_users):
        genre = "comedy" if u % 2 else "horror"
        for k, item in enumerate(rng.permutation(GENRES[genre])[:6]):
            rows["USER_ID"].append(f"{genre}-{u}")
            rows["ITEM_ID"].append(str(item))
            rows["TIMESTAMP"].append(1_000_000 + 100_000 * u + 60 * k)
    data = from_table(pa.table({k: pa.array(v, pa.int64() if k == "TIMESTAMP" else pa.string())
                                for k, v in rows.items()}))
    return with_catalog(data, list(NEW.values()))


@pytest.fixture(scope="module")
def model() -> hrnn.HRNN:
    return hrnn.fit(fans(200, seed=0), TINY, items=ITEMS)


def scores_of(model: hrnn.HRNN, watched: list[str]) -> dict[str, float]:
    code = {v: i for i, v in enumerate(model.item_ids)}
    got = model.score(np.arange(1), [np.array([code[i] for i in watched])], [np.arange(len(watched)) * 60])[0]
    return {item: float(got[code[item]]) for item in model.item_ids}


def test_an_item_nobody_watched_is_recommended_to_those_who_like_its_genre(model: hrnn.HRNN) -> None:
    assert model.metadata is not None and not model.metadata.warm[list(model.item_ids).index("c-new")]
    comedy = scores_of(model, ["c1", "c2", "c3"])
    horror = scores_of(model, ["h1", "h2", "h3"])
    assert comedy["c-new"] > comedy["h-new"] and horror["h-new"] > horror["c-new"]


def test_without_metadata_the_new_items_are_never_learnt() -> None:
    plain = hrnn.fit(fans(200, seed=0), TINY)
    assert plain.metadata is None and "F_W" not in plain.weights
    comedy = scores_of(plain, ["c1", "c2", "c3"])
    assert max(comedy["c-new"], comedy["h-new"]) < min(comedy[i] for i in GENRES["comedy"])


def test_the_artifact_serves_the_metadata_scores_and_update_keeps_them(model: hrnn.HRNN,
                                                                       tmp_path: Path) -> None:
    files = model.export(tmp_path)
    assert files["metadata"] == hrnn.METADATA
    code = {v: i for i, v in enumerate(model.item_ids)}
    runtime = HRNNRuntime(tmp_path, files)
    h, c = runtime.new_state()
    for item in ("c1", "c2", "c3"):
        h = runtime.step(np.array([code[item]]), h, c)
    expected = np.array(list(scores_of(model, ["c1", "c2", "c3"]).values()))
    np.testing.assert_allclose(runtime.scores(h)[0], expected, atol=1e-4)

    kept = hrnn.Metadata.load(tmp_path, files)  # what an UPDATE starts from
    assert kept is not None and model.metadata is not None
    np.testing.assert_array_equal(kept.warm, model.metadata.warm)
    assert kept.encoder == model.metadata.encoder
    child = hrnn.fit(fans(40, seed=1), TINY, parent=model, since=0, items=ITEMS)
    assert child.weights["F_W"].shape == model.weights["F_W"].shape
    comedy = scores_of(child, ["c1", "c2", "c3"])
    assert comedy["c-new"] > comedy["h-new"]


def test_an_update_reads_a_changed_catalogue_with_its_parents_encoder(model: hrnn.HRNN) -> None:
    """A genre first seen after training (a PutItems) is no axis of the parent's item tower: the
    UPDATE keeps the tower it learnt, rather than starting a new one on shuffled axes."""
    drama = pa.table({"ITEM_ID": ["d1", "d2"], "GENRES": ["drama", "drama"]})
    child = hrnn.fit(fans(40, seed=1), TINY, parent=model, since=0, items=pa.concat_tables([ITEMS, drama]))
    assert child.metadata is not None and model.metadata is not None
    assert child.metadata.encoder == model.metadata.encoder
    assert child.weights["F_W"].shape == model.weights["F_W"].shape
    comedy = scores_of(child, ["c1", "c2", "c3"])
    assert comedy["c-new"] > comedy["h-new"]


def test_an_item_added_after_training_is_scored_like_a_trained_one_with_its_metadata(
        model: hrnn.HRNN, tmp_path: Path) -> None:
    """What serving does with a PutItems after training (serving.new_items): the item's embedding
    is its metadata's, exactly as training scores the items nobody watched."""
    runtime = HRNNRuntime(tmp_path, model.export(tmp_path))
    later = runtime.with_items(pa.table({"ITEM_ID": ["c-later"], "GENRES": ["comedy"]}), ["c-later"])
    code = {v: i for i, v in enumerate(model.item_ids)}
    h, c = runtime.new_state()
    h = runtime.step(np.array([code["c1"]]), h, c)
    scores = later.scores(h)[0]
    assert len(scores) == len(model.item_ids) + 1 and len(runtime.scores(h)[0]) == len(model.item_ids)
    assert scores[-1] == pytest.approx(scores[code["c-new"]], abs=1e-5)
    # the step graph reads trained items only: an event on the new one changes no state
    events = [(code["c1"], 0.0), (len(model.item_ids), 60.0)]
    np.testing.assert_array_equal(later.state_of(events)[0], later.state_of(events[:1])[0])
