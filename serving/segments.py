"""User segments: for an item, or items of given attributes, the users most likely to interact
with it next. A batch segment job's lines in, their answer lines out; no I/O.

aws-item-affinity reads `{"itemId"}` lines, aws-item-attribute-affinity `{"itemAttributes":
"ITEMS.GENRES = \\"Comedy\\" AND ITEMS.GENRES = \\"Action\\""}` lines (the items that have all
of them); answers are Personalize's: `{"input": {"itemId"}, "output": {"recommendedUsers"}}`,
`{"itemAttributes", "output": {"recommendedUsers"}}`, with `"error": null`, or `"output": null`
and the error for a line that cannot be answered.

A user's affinity for items S is the HRNN's probability that its next item is one of S, from
its state as of training: log sum_{c in S} exp(h.E_c + b_c) minus the log of the same sum over
the whole catalog (`normalisers`). Users are read a chunk at a time from the artifact's
memory-mapped states, keeping each line's running top k, so memory stays bounded however many
users the model knows. Users without history have no state and are in no segment.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from serving.batch_recommend import MAX_ID

if TYPE_CHECKING:
    from serving.models import Model

ITEM_AFFINITY, ATTRIBUTE_AFFINITY = "aws-item-affinity", "aws-item-attribute-affinity"
USER_CHUNK = 16_384  # users scored at a time: a chunk's scores are USER_CHUNK x (items asked)
MAX_ATTRIBUTES = 1000  # characters of one itemAttributes line


@dataclass(frozen=True)
class SegmentLine:
    echo: dict[str, Any]  # what the answer repeats: {"input": ...} or {"itemAttributes": ...}
    item_id: str | None = None
    attributes: str | None = None
    error: str | None = None


def parse_segment(text: bytes, recipe: str) -> SegmentLine:
    """One input line as the recipe reads it; a SegmentLine with `error` where it cannot."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return SegmentLine({"input": text.decode("utf-8", "replace")[:1000]},
                           error="the line is not a JSON object")
    if recipe == ATTRIBUTE_AFFINITY:
        attributes = value.get("itemAttributes") if isinstance(value, dict) else None
        if not isinstance(attributes, str) or not 0 < len(attributes) <= MAX_ATTRIBUTES:
            return SegmentLine({"input": value}, error=f"itemAttributes is required: 1 to {MAX_ATTRIBUTES} "
                                                       "characters, as ITEMS.GENRES = \"Comedy\"")
        return SegmentLine({"itemAttributes": attributes}, attributes=attributes)
    item = value.get("itemId") if isinstance(value, dict) else None
    if not isinstance(item, str) or not 0 < len(item) <= MAX_ID:
        return SegmentLine({"input": value},
                           error=f"itemId is required: a string of 1 to {MAX_ID} characters")
    return SegmentLine({"input": value}, item_id=item)


def segment_line(line: SegmentLine, users: list[str] | None = None, error: str | None = None) -> bytes:
    output = None if users is None else {"recommendedUsers": users}
    return orjson.dumps({**line.echo, "output": output, "error": error})


def logsumexp_rows(scores: np.ndarray) -> np.ndarray:
    peak = scores.max(axis=1)
    return peak + np.log(np.exp(scores - peak[:, None]).sum(axis=1))


@dataclass
class Segments:
    """What every line of one batch segment job is answered with. `items_with(attributes)` gives
    the codes of the items that have them (the items dataset, read by the job), or raises
    ValueError saying why the attributes cannot be read."""
    model: Model
    recipe: str
    k: int
    items_with: Callable[[str], np.ndarray] | None = None
    _normalisers: np.ndarray | None = field(default=None, init=False, repr=False)

    def parse(self, text: bytes) -> SegmentLine:
        return parse_segment(text, self.recipe)

    def answer(self, lines: Sequence[SegmentLine]) -> tuple[list[bytes], int]:
        """The chunk's output lines, in its order, and how many of them are errors."""
        out: list[bytes | None] = [None] * len(lines)
        asked: list[tuple[int, np.ndarray]] = []
        for i, line in enumerate(lines):
            try:
                if line.error:
                    raise ValueError(line.error)
                asked.append((i, self._items(line)))
            except ValueError as exc:
                out[i] = segment_line(line, error=str(exc))
        failed = len(lines) - len(asked)
        for (i, _), users in zip(asked, self._top_users([codes for _, codes in asked]), strict=True):
            out[i] = segment_line(lines[i], users)
        return out, failed  # type: ignore[return-value]

    def _items(self, line: SegmentLine) -> np.ndarray:
        if line.item_id is not None:
            code = self.model.index.get(line.item_id)
            if code is None:
                raise ValueError(f"item {line.item_id} is not one the model was trained on")
            return np.array([code])
        assert line.attributes is not None and self.items_with is not None
        codes = self.items_with(line.attributes)
        if not len(codes):
            raise ValueError("no item the model knows has these attributes")
        return codes

    def _top_users(self, asked: list[np.ndarray]) -> list[list[str]]:
        """Each item set's k users of highest affinity, best first."""
        runtime = self.model.runtime
        assert runtime is not None and runtime.user_states is not None
        normalisers, H = self.normalisers(), runtime.hidden_dimension
        best = [(np.zeros(0), np.zeros(0, dtype=np.int64)) for _ in asked]
        for start in range(0, len(normalisers), USER_CHUNK):
            h = np.asarray(runtime.user_states[start:start + USER_CHUNK, :H], dtype=np.float32)
            lse = normalisers[start:start + len(h)]
            for j, codes in enumerate(asked):
                scores = h @ runtime.item_embeddings[codes].T + runtime.item_bias[codes]
                affinity = (scores[:, 0] if len(codes) == 1 else logsumexp_rows(scores)) - lse
                best[j] = _merged(best[j], affinity, start, self.k)
        ids = self.model.known.user_ids
        return [[ids[u] for u in users.tolist()] for _, users in best]

    def normalisers(self) -> np.ndarray:
        """Each user's log sum of exp(h.E + b) over the catalog (-inf: no history, no state)."""
        if self._normalisers is None:
            runtime, csr = self.model.runtime, self.model.known.csr
            assert runtime is not None and runtime.user_states is not None
            H, n = runtime.hidden_dimension, len(runtime.user_states)
            out = np.full(n, np.inf, dtype=np.float32)
            for start in range(0, n, USER_CHUNK):
                h = np.asarray(runtime.user_states[start:start + USER_CHUNK, :H], dtype=np.float32)
                out[start:start + len(h)] = logsumexp_rows(runtime.scores(h))
            out[np.diff(csr["offsets"]) == 0] = np.inf  # affinity -inf: never chosen
            self._normalisers = out
        return self._normalisers


def _merged(best: tuple[np.ndarray, np.ndarray], affinity: np.ndarray, offset: int,
            k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of the users kept so far and this chunk's, best first (users never without a state)."""
    ok = np.isfinite(affinity)
    scores = np.concatenate([best[0], affinity[ok]])
    users = np.concatenate([best[1], np.flatnonzero(ok) + offset])
    if len(scores) > k:
        keep = np.argpartition(-scores, k - 1)[:k]
        scores, users = scores[keep], users[keep]
    order = np.lexsort((users, -scores))
    return scores[order], users[order]
