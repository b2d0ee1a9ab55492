"""Batch input lines as each recipe reads them, and the chunk's top k, against the one-user way."""
from __future__ import annotations

import json

import numpy as np
import orjson
import pytest

from serving.batch_recommend import PERSONALIZED_RANKING, Line, answer_line, parse, top_rows
from serving.ranking import best_of, normalise
from serving.recommend import RELATED_ITEMS, USER_PERSONALIZATION


@pytest.mark.parametrize("text, recipe_type, wanted", [
    (b'{"userId": "u1"}', USER_PERSONALIZATION, Line({"userId": "u1"}, user_id="u1")),
    (b'{"userId": "u1", "filterValues": {"T": "\\"a\\""}}', USER_PERSONALIZATION,
     Line({"userId": "u1", "filterValues": {"T": '"a"'}}, user_id="u1", filter_values={"T": '"a"'})),
    (b'{"itemId": "i9"}', RELATED_ITEMS, Line({"itemId": "i9"}, item_id="i9")),
    (b'{"userId": "u1", "itemList": ["a", "b"]}', PERSONALIZED_RANKING,
     Line({"userId": "u1", "itemList": ["a", "b"]}, user_id="u1", item_list=("a", "b"))),
])
def test_each_recipe_reads_its_own_lines(text: bytes, recipe_type: str, wanted: Line) -> None:
    assert parse(text, recipe_type) == wanted


@pytest.mark.parametrize("text, recipe_type, why", [
    (b"{not json", USER_PERSONALIZATION, "not a JSON object"),
    (b'["u1"]', USER_PERSONALIZATION, "not a JSON object"),
    (b'{"itemId": "i1"}', USER_PERSONALIZATION, "userId is required"),
    (b'{"userId": ""}', USER_PERSONALIZATION, "userId is required"),
    (b'{"userId": 7}', USER_PERSONALIZATION, "userId is required"),
    (b'{"userId": "' + b"u" * 257 + b'"}', USER_PERSONALIZATION, "userId is required"),
    (b'{"userId": "u1"}', RELATED_ITEMS, "itemId is required"),
    (b'{"userId": "u1"}', PERSONALIZED_RANKING, "itemList is required"),
    (b'{"userId": "u1", "itemList": []}', PERSONALIZED_RANKING, "itemList is required"),
    (b'{"userId": "u1", "itemList": [1]}', PERSONALIZED_RANKING, "itemList is required"),
    (b'{"userId": "u1", "filterValues": {"T": 1}}', USER_PERSONALIZATION, "filterValues"),
])
def test_a_line_that_is_no_request_says_why_and_is_echoed(text: bytes, recipe_type: str, why: str) -> None:
    line = parse(text, recipe_type)
    assert line.error is not None and why in line.error
    answer = orjson.loads(answer_line(line, error=line.error))
    assert answer["output"] is None and answer["error"] == line.error
    assert answer["input"] == (json.loads(text) if text.startswith((b"{\"", b"[")) else text.decode())


def test_an_answer_line_is_personalizes_shape() -> None:
    line = Line({"userId": "u1"}, user_id="u1")
    got = orjson.loads(answer_line(line, [{"itemId": "a", "score": 0.5}, {"itemId": "b", "score": 0.25}]))
    assert got == {"input": {"userId": "u1"},
                   "output": {"recommendedItems": ["a", "b"], "scores": [0.5, 0.25]}, "error": None}


def test_the_chunks_top_k_is_each_rows_own() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((7, 500)).astype(np.float32) * 4
    codes, probs = top_rows(scores, 10)
    for row in range(7):
        assert codes[row].tolist() == best_of(scores[row], 10).tolist()
        expected = normalise(scores[row].astype(np.float64), "aws-hrnn")[codes[row]]
        assert probs[row] == pytest.approx(expected, rel=1e-5)
    assert top_rows(scores[:, :4], 10)[0].shape == (7, 4)  # k beyond the catalogue: all of it
