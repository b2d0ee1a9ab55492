"""Batch recommendations: a chunk of Personalize's batch input lines in, their answer lines out.

A line is one request, as Personalize's batch input has it: `{"userId"}` for
USER_PERSONALIZATION recipes, `{"itemId"}` for RELATED_ITEMS, `{"userId", "itemList"}` for
PERSONALIZED_RANKING, each with `filterValues` where the job's filter has placeholders. Each
answer is `{"input", "output": {"recommendedItems", "scores"}, "error": null}`, or, for a line
that cannot be answered, `{"input", "output": null, "error": why}`: a bad line fails only itself.

The answers are GetRecommendations' and GetPersonalizedRanking's (serving.recommend) for a user
as the model knows them from training. Lines that the model scores alike (an HRNN, no filter,
no exploration) are scored together: one matrix product for the chunk, then each row's top k
(`top_rows`), which is what makes a million users a matter of minutes. No I/O here: the job
(serving/control/batch.py) reads and writes the files.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from serving.exclusions import Allowed, Exclusions
from serving.ranking import Exploration
from serving.recommend import (
    NONE_EXCLUDED,
    RELATED_ITEMS,
    USER_PERSONALIZATION,
    Ranked,
    User,
    answer,
    excluded,
    rank,
    recommend,
)
from stream.live_state import NO_PAST

if TYPE_CHECKING:
    from serving.models import Model

PERSONALIZED_RANKING = "PERSONALIZED_RANKING"
MAX_ID = 256  # a user or item id, as GetRecommendations takes it
MAX_ITEM_LIST = 500  # GetPersonalizedRanking's inputList


class BadLine(ValueError):
    """Why a line is not a request of the job's recipe; its answer says so."""


@dataclass(frozen=True)
class Line:
    input: Any  # what the answer echoes: the line's object, or its text where it is not JSON
    user_id: str | None = None
    item_id: str | None = None
    item_list: tuple[str, ...] | None = None
    filter_values: dict[str, str] | None = None
    error: str | None = None  # set where the line cannot be answered


# what a line's filter lets through, for its user (or None: no filter)
AllowedFor = Callable[[Line, User, int | None], Allowed | None]


def parse(text: bytes, recipe_type: str) -> Line:
    """One input line as the job's recipe reads it; a Line with `error` where it cannot."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return Line(text.decode("utf-8", "replace")[:1000], error="the line is not a JSON object")
    try:
        return _request(value, recipe_type)
    except BadLine as exc:
        return Line(value, error=str(exc))


def _request(value: Any, recipe_type: str) -> Line:
    if not isinstance(value, dict):
        raise BadLine("the line is not a JSON object")
    wanted = {RELATED_ITEMS: "itemId"}.get(recipe_type, "userId")
    if not isinstance(value.get(wanted), str) or not 0 < len(value[wanted]) <= MAX_ID:
        raise BadLine(f"{wanted} is required: a string of 1 to {MAX_ID} characters")
    item_list = value.get("itemList")
    if recipe_type == PERSONALIZED_RANKING and (
            not isinstance(item_list, list) or not 0 < len(item_list) <= MAX_ITEM_LIST
            or not all(isinstance(i, str) and 0 < len(i) <= MAX_ID for i in item_list)):
        raise BadLine(f"itemList is required: 1 to {MAX_ITEM_LIST} item ids")
    values = value.get("filterValues")
    if values is not None and not (isinstance(values, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items())):
        raise BadLine("filterValues must map placeholder names to strings")
    return Line(value, user_id=value.get("userId") if isinstance(value.get("userId"), str) else None,
                item_id=value.get("itemId") if recipe_type == RELATED_ITEMS else None,
                item_list=tuple(item_list) if recipe_type == PERSONALIZED_RANKING else None,
                filter_values=values)


def answer_line(line: Line, items: list[dict[str, Any]] | None = None, error: str | None = None) -> bytes:
    """The output line of one input line."""
    output = None if items is None else {"recommendedItems": [i["itemId"] for i in items],
                                         "scores": [i["score"] for i in items]}
    return orjson.dumps({"input": line.input, "output": output, "error": error})


def top_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best codes, best first, and their probabilities (a softmax over the row)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    codes, top = np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)
    peak = scores.max(axis=1, keepdims=True)
    total = np.exp(scores - peak, dtype=np.float32).sum(axis=1, keepdims=True)
    return codes, np.exp(top - peak) / total


@dataclass(frozen=True)
class Batch:
    """What every line of one batch job is answered with."""
    model: Model
    recipe_type: str
    k: int
    allowed_for: AllowedFor | None = None  # the job's filter, None without one
    exploration: Exploration | None = None

    def parse(self, text: bytes) -> Line:
        return parse(text, self.recipe_type)

    @property
    def together(self) -> bool:
        """Whether its users are scored as one matrix: an HRNN's, with nothing per line."""
        return (self.model.runtime is not None and self.recipe_type == USER_PERSONALIZATION
                and self.allowed_for is None and self.exploration is None)

    def answer(self, lines: Sequence[Line]) -> tuple[list[bytes], int]:
        """The chunk's output lines, in its order, and how many of them are errors."""
        out: list[bytes | None] = [answer_line(x, error=x.error) if x.error else None for x in lines]
        failed = len(lines) - len(todo := [i for i, x in enumerate(lines) if x.error is None])
        if self.together:
            for i, items in zip(todo, self._scored_together([lines[i] for i in todo]), strict=True):
                out[i] = answer_line(lines[i], items)
        else:
            for i in todo:
                out[i], ok = self._one(lines[i])
                failed += not ok
        return out, failed  # type: ignore[return-value]

    def _one(self, line: Line) -> tuple[bytes, bool]:
        model = self.model
        user = User(line.user_id, model.history(line.user_id, ())) if line.user_id else User(None, NO_PAST)
        code = model.index.get(line.item_id) if line.item_id is not None else None
        try:
            allowed = self.allowed_for(line, user, code) if self.allowed_for else None
        except ValueError as exc:  # the line's filterValues do not fit the filter
            return answer_line(line, error=str(exc)), False
        if line.item_list is not None:
            return answer_line(line, rank(model, user, list(line.item_list), allowed)), True
        exclusions = Exclusions.of(model.n_items, excluded(self.recipe_type, code), allowed)
        return answer_line(line, recommend(model, self.recipe_type, user, code, exclusions, self.k,
                                           exploration=self.exploration)), True

    def _scored_together(self, lines: Sequence[Line]) -> list[list[dict[str, Any]]]:
        """Users with a state as of training share one product with the item table; the rest
        (users the model does not know) get what is popular, as GetRecommendations gives them."""
        model, runtime = self.model, self.model.runtime
        assert runtime is not None
        states = [model.trained_state(x.user_id) if x.user_id else None for x in lines]
        known = [i for i, s in enumerate(states) if s is not None]
        answers: list[list[dict[str, Any]] | None] = [None] * len(lines)
        if known:
            h = np.concatenate([states[i].h_session for i in known])  # type: ignore[union-attr]
            codes, probs = top_rows(runtime.scores(h), self.k)
            for row, i in enumerate(known):
                answers[i] = answer(model, Ranked(codes[row], probs[row]))
        if len(known) < len(lines):
            popular = recommend(model, self.recipe_type, User(None, NO_PAST), None,
                                Exclusions.of(model.n_items, NONE_EXCLUDED, None), self.k)
            answers = [a if a is not None else popular for a in answers]
        return answers  # type: ignore[return-value]
