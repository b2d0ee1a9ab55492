"""Batch segment lines as each recipe reads them, and the running top k over chunks of users."""
from __future__ import annotations

import numpy as np
import orjson

from serving.segments import (
    ATTRIBUTE_AFFINITY,
    ITEM_AFFINITY,
    _merged,
    logsumexp_rows,
    parse_segment,
    segment_line,
)


def test_each_recipe_reads_its_own_lines_and_echoes_them_as_personalize_does() -> None:
    item = parse_segment(b'{"itemId": "105"}', ITEM_AFFINITY)
    assert item.item_id == "105" and item.error is None
    assert orjson.loads(segment_line(item, ["u1", "u2"])) == {
        "input": {"itemId": "105"}, "output": {"recommendedUsers": ["u1", "u2"]}, "error": None}
    attributes = parse_segment(b'{"itemAttributes": "ITEMS.GENRES = \\"Comedy\\""}', ATTRIBUTE_AFFINITY)
    assert attributes.attributes == 'ITEMS.GENRES = "Comedy"'
    assert orjson.loads(segment_line(attributes, ["u3"])) == {
        "itemAttributes": 'ITEMS.GENRES = "Comedy"', "output": {"recommendedUsers": ["u3"]}, "error": None}
    for text, recipe, why in ((b'{"itemAttributes": "x"}', ITEM_AFFINITY, "itemId"),
                              (b'{"itemId": "1"}', ATTRIBUTE_AFFINITY, "itemAttributes"),
                              (b"[1]", ITEM_AFFINITY, "itemId"), (b"{", ITEM_AFFINITY, "JSON")):
        line = parse_segment(text, recipe)
        assert line.error is not None and why in line.error


def test_the_running_top_k_over_chunks_is_the_whole_top_k() -> None:
    rng = np.random.default_rng(5)
    affinity = rng.standard_normal(1000)
    affinity[rng.integers(0, 1000, 50)] = -np.inf  # users without a state
    best = (np.zeros(0), np.zeros(0, dtype=np.int64))
    for start in range(0, 1000, 128):
        best = _merged(best, affinity[start:start + 128], start, 10)
    assert best[1].tolist() == np.argsort(-affinity, kind="stable")[:10].tolist()


def test_logsumexp_rows_is_stable_for_large_scores() -> None:
    rows = np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]])
    assert np.allclose(logsumexp_rows(rows), [1000.0 + np.log(2.0), np.log(4.0)])
