"""aws-similar-items: co-occurrence blended with metadata, so a film nobody has watched yet has neighbours.

The catalogue: Amelie and Chocolat are romances watched together; Alien and Aliens are horror
watched together; Before Sunrise is a romance just added to the ITEMS dataset, watched by nobody.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from support import archived

from kernel.contract import DatasetRecord
from training.interactions import Interactions, from_table, with_catalog
from training.similar_items import catalogue, fit
from training.sims import cooccurrence_neighbours

ITEMS = pa.table({
    "ITEM_ID": ["amelie", "chocolat", "alien", "aliens", "before-sunrise"],
    "GENRES": ["Romance|Comedy", "Romance|Drama", "Horror|Sci-Fi", "Horror|Action", "Romance | drama"],
    "TITLE": ["Amelie", "Chocolat", "Alien", "Aliens", "Before Sunrise"],  # unique: says nothing
    "YEAR": [2001, 2000, 1979, 1986, 1995],
    "CREATION_TIMESTAMP": [0, 0, 0, 0, 10**9],
})


def watched(histories: dict[str, list[str]]) -> Interactions:
    rows = [(u, i, t) for u, items in histories.items() for t, i in enumerate(items)]
    u, i, t = zip(*rows, strict=True)
    return from_table(pa.table({"USER_ID": list(u), "ITEM_ID": list(i), "TIMESTAMP": list(t)}))


WATCHED = watched({"u1": ["amelie", "chocolat"], "u2": ["amelie", "chocolat"], "u3": ["alien", "aliens"],
                   "u4": ["alien", "aliens", "amelie"]})
CATALOGUE = with_catalog(WATCHED, catalogue(ITEMS))


def neighbours(d: Interactions, items: pa.Table | None, item: str, **params: str) -> dict[str, float]:
    m = fit(d, items, params, k=4)
    row = int(np.flatnonzero(d.item_ids == item)[0])
    return {d.item_ids[c]: float(s) for c, s in zip(m.codes[row], m.sims[row], strict=True) if c >= 0}


def test_a_film_nobody_watched_is_served_from_its_genres_both_ways() -> None:
    new = neighbours(CATALOGUE, ITEMS, "before-sunrise")
    assert list(new)[:2] == ["chocolat", "amelie"]  # romance and drama, then romance alone
    assert "alien" not in new
    assert "before-sunrise" in neighbours(CATALOGUE, ITEMS, "amelie")
    assert "before-sunrise" in neighbours(CATALOGUE, ITEMS, "chocolat")


def test_co_occurrence_still_leads_at_the_default_weight() -> None:
    got = neighbours(CATALOGUE, ITEMS, "amelie")
    assert list(got)[0] == "chocolat"
    # each part is scaled to its best for amelie: chocolat is best by co-watching (1) and by genre
    assert got["chocolat"] == pytest.approx(0.9 * 1.0 + 0.1 * 1.0)
    assert 0.0 < got["before-sunrise"] <= 0.1  # metadata only: at most w


def test_metadata_weight_zero_is_co_occurrence_alone_and_one_is_metadata_alone() -> None:
    alone = neighbours(CATALOGUE, ITEMS, "amelie", metadata_weight="0")
    codes, sims = cooccurrence_neighbours(CATALOGUE.user, CATALOGUE.item, CATALOGUE.n_items, 0.5, 1, 4)
    row = int(np.flatnonzero(CATALOGUE.item_ids == "amelie")[0])
    expected = sims[row][codes[row] >= 0]
    assert list(alone) == [CATALOGUE.item_ids[c] for c in codes[row] if c >= 0]
    assert list(alone.values()) == pytest.approx((expected / expected.max()).tolist())
    assert neighbours(CATALOGUE, ITEMS, "before-sunrise", metadata_weight="0") == {}
    assert "alien" not in neighbours(CATALOGUE, ITEMS, "amelie", metadata_weight="1")  # co-watched only


def test_without_an_items_dataset_it_is_co_occurrence() -> None:
    for items in (None, pa.table({})):
        assert list(neighbours(WATCHED, items, "amelie")) == ["chocolat", "alien", "aliens"]


def test_year_only_nudges_the_genres() -> None:
    items = pa.table({"ITEM_ID": ["old-drama", "new-drama", "old-comedy"],
                      "GENRES": ["Drama", "Drama", "Comedy"], "YEAR": [1950, 2020, 1950]})
    d = with_catalog(watched({"u": ["old-drama"]}), catalogue(items))
    assert list(neighbours(d, items, "old-drama", metadata_weight="1"))[0] == "new-drama"


def test_catalogue_items_join_the_vocabulary_after_the_codes_there_are() -> None:
    assert CATALOGUE.item_ids.tolist() == [*WATCHED.item_ids.tolist(), "before-sunrise"]
    assert CATALOGUE.n_items == WATCHED.n_items + 1 and len(CATALOGUE) == len(WATCHED)
    assert np.array_equal(CATALOGUE.item, WATCHED.item) and np.array_equal(CATALOGUE.user, WATCHED.user)
    assert with_catalog(WATCHED, ["amelie", "alien"]) is WATCHED  # nothing new
    assert with_catalog(WATCHED, ["x", "x"]).item_ids.tolist()[-1:] == ["x"]  # once
    assert catalogue(pa.table({})) == [] and catalogue(None) == []


def test_catalogue_only_items_have_no_popularity() -> None:
    m = fit(CATALOGUE, ITEMS, {})
    assert m.popularity[-1] == 0.0 and m.popularity.dtype == np.float32
    assert m.codes.shape == (CATALOGUE.n_items, 100) and m.codes.dtype == np.int32


def test_unknown_hyperparameters_are_refused() -> None:
    with pytest.raises(ValueError, match="min_cointeraction_count"):
        fit(WATCHED, None, {"min_cointeraction_count": "3"})


async def test_a_trained_artifact_serves_the_new_film(tmp_path: Path) -> None:
    from kernel.contract import Event
    from serving.models import load
    from training.trainer import Trainer

    trainer = Trainer(tmp_path, min_interactions=10)
    films = ["amelie", "chocolat", "alien", "aliens"]
    events = [Event(event_id=f"e{u}-{n}", dataset_group="films", tracking_id="t", user_id=f"u{u}",
                    session_id=f"s{u}", event_type="watch", item_id=films[(u % 2) * 2 + n],
                    sent_at=1_700_000_000.0 + 10 * u + n, received_at=0.0)
              for u in range(30) for n in range(2)]
    await archived(tmp_path, events)
    trainer.datasets.put([DatasetRecord(record_id=f"r{n}", dataset_group="films", dataset_type="ITEMS",
                                        id=row["ITEM_ID"], fields={"GENRES": row["GENRES"]}, received_at=0.0)
                          for n, row in enumerate(ITEMS.to_pylist())])
    out = trainer.train(version_arn="arn:aws:personalize:us-east-1:000000000000:solution/s/v1",
                        dataset_group="films", recipe_arn="arn:aws:personalize:::recipe/aws-similar-items",
                        hyperparameters={"metadata_weight": "0.3", "popularity_discount_factor": "0.5"},
                        event_type=None, event_value_threshold=None, parent=None, progress=lambda **_: None)
    model = load("v1", tmp_path / out["artifact"])
    code = model.index
    scores = model.related_scores(code["before-sunrise"])
    assert [model.item_ids[c] for c in np.argsort(-scores)[:2]] == ["chocolat", "amelie"]
