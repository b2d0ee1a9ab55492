"""Items as metadata vectors: what aws-similar-items compares and the v2 recipes learn from.

The encoder is fitted once on the catalogue a model trains with and kept beside the model, so an
item added later (PutItems, after training) gets its vector on the same axes as the trained ones:
that is what lets serving score an item nobody has interacted with, and an UPDATE keep the item
tower it learnt. Metadata is the ITEMS table's own columns, except ITEM_ID and CREATION_TIMESTAMP:

- a string (or boolean) column is categorical: a value is split on "|" and each part, trimmed and
  lower-cased, is a token of that column (GENRES:drama is not MOOD:drama). Tokens are TF-IDF
  weighted (smoothed IDF, one count per item), so a rare shared genre says more than one every
  item has, and the categorical block of each item is L2-normalised;
- the one textual field the schema may mark (a description) is split into words; words that at
  least two items and at most MAX_WORD_SHARE of them use, the MAX_WORDS commonest, are weighted
  the same way in a block of their own, of norm TEXT_WEIGHT;
- a numeric column is standardised (clipped to CLIP_SD deviations; missing values are the mean)
  and the numeric block weighted NUMERIC_WEIGHT in all, so it nudges without outvoting the
  categories.

A token only one item has is dropped: it makes no two items alike and would only shrink the
shared ones once a vector is normalised. A token the fitted encoder never saw (a new genre in a
later PutItems) counts as none until the next FULL training. The vector is unit length, or zeros
for an item described with nothing the encoder knows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

NOT_METADATA = ("ITEM_ID", "CREATION_TIMESTAMP")
NUMERIC_WEIGHT = 0.25  # the norm of an item's numeric block next to its categorical one (1)
TEXT_WEIGHT = 0.5  # ... and of its textual block: a word says less than a genre someone chose
CLIP_SD = 3.0
MAX_WORDS = 5000
MAX_WORD_SHARE = 0.5  # a word more than half the items use is as good as a stop word
WORD_SPLIT = r"[^\p{L}\p{N}]+"


@dataclass(frozen=True)
class Tokens:
    """One column's (or, textual, one field's words') kept tokens and their IDF, in feature order."""
    name: str
    tokens: tuple[str, ...]
    idf: tuple[float, ...]


@dataclass(frozen=True)
class Numeric:
    name: str
    mean: float
    sd: float


@dataclass(frozen=True)
class FeatureEncoder:
    categorical: tuple[Tokens, ...] = ()
    text: Tokens | None = None
    numeric: tuple[Numeric, ...] = ()

    @property
    def dimension(self) -> int:
        return sum(len(c.tokens) for c in self.categorical) + len(self.text.tokens if self.text else ()) \
            + len(self.numeric)

    @classmethod
    def fit(cls, items: pa.Table | None, item_ids: np.ndarray, textual: str | None = None) -> FeatureEncoder:
        """Fitted on the rows of `items` whose ITEM_ID is in `item_ids` (the model's vocabulary);
        `textual`: the schema's textual field, if it has one."""
        if not _usable(items):
            return cls()
        assert items is not None
        row_code = _row_codes(items, item_ids)
        categorical: list[tuple[str, np.ndarray, np.ndarray, list[str]]] = []
        text, numeric = None, []
        for name in _metadata_columns(items):
            column = items[name].combine_chunks()
            if name == textual:
                text = _fitted_words(name, column, row_code)
            elif _is_categorical(column):
                categorical.append((name, *_token_pairs(column, row_code, None)))
            elif _is_number(_kind(column)) and (stats := _stats(name, column, row_code)) is not None:
                numeric.append(stats)
        return cls(_fitted_tokens(categorical), text, tuple(numeric))

    def transform(self, items: pa.Table | None, item_ids: np.ndarray) -> np.ndarray:
        """float32 [len(item_ids), dimension]: each item's vector (rows of other items ignored)."""
        n = len(item_ids)
        if not _usable(items) or self.dimension == 0:
            return np.zeros((n, self.dimension), np.float32)
        assert items is not None
        row_code = _row_codes(items, item_ids)
        parts = [_unit_rows(self._block(items, self.categorical, row_code, n, words=False))]
        if self.text is not None:
            parts.append(_unit_rows(self._block(items, (self.text,), row_code, n, words=True)) * TEXT_WEIGHT)
        if self.numeric:
            z = np.zeros((n, len(self.numeric)), np.float32)
            for j, s in enumerate(self.numeric):
                if s.name in items.column_names:
                    z[:, j] = _z_scores(items[s.name].combine_chunks(), row_code, n, s)
            parts.append(z * np.float32(NUMERIC_WEIGHT / np.sqrt(len(self.numeric))))
        return _unit_rows(np.concatenate(parts, axis=1).astype(np.float32))

    @staticmethod
    def _block(items: pa.Table, fields: tuple[Tokens, ...], row_code: np.ndarray, n: int,
               words: bool) -> np.ndarray:
        x = np.zeros((n, sum(len(f.tokens) for f in fields)), np.float32)
        offset = 0
        for f in fields:
            if f.name in items.column_names and f.tokens:
                code, token, _ = _token_pairs(items[f.name].combine_chunks(), row_code, f.tokens, words)
                x[code, offset + token] = np.asarray(f.idf, np.float32)[token]
            offset += len(f.tokens)
        return x

    def to_json(self) -> dict:
        def tokens(t: Tokens) -> dict:
            return {"name": t.name, "tokens": list(t.tokens), "idf": list(t.idf)}
        return {"categorical": [tokens(c) for c in self.categorical],
                "text": None if self.text is None else tokens(self.text),
                "numeric": [{"name": s.name, "mean": s.mean, "sd": s.sd} for s in self.numeric]}

    @classmethod
    def from_json(cls, spec: dict) -> FeatureEncoder:
        def tokens(t: dict) -> Tokens:
            return Tokens(t["name"], tuple(t["tokens"]), tuple(float(v) for v in t["idf"]))
        return cls(tuple(tokens(c) for c in spec["categorical"]),
                   None if spec.get("text") is None else tokens(spec["text"]),
                   tuple(Numeric(s["name"], float(s["mean"]), float(s["sd"])) for s in spec["numeric"]))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()))

    @classmethod
    def load(cls, path: Path) -> FeatureEncoder:
        return cls.from_json(json.loads(path.read_text()))


def item_features(items: pa.Table | None, item_ids: np.ndarray, textual: str | None = None) -> np.ndarray:
    """The vectors of `item_ids` with an encoder fitted on them: float32 [len(item_ids), d]."""
    return FeatureEncoder.fit(items, item_ids, textual).transform(items, item_ids)


def _usable(items: pa.Table | None) -> bool:
    return items is not None and items.num_rows > 0 and "ITEM_ID" in items.column_names


def _metadata_columns(items: pa.Table) -> list[str]:
    return [name for name in items.column_names if name not in NOT_METADATA]


def _row_codes(items: pa.Table, item_ids: np.ndarray) -> np.ndarray:
    """Each row's item's position in `item_ids`, -1 for an item outside it."""
    code_of = {item: c for c, item in enumerate(np.asarray(item_ids).tolist())}
    ids = items["ITEM_ID"].combine_chunks().cast(pa.string()).to_pylist()
    return np.asarray([code_of.get(x, -1) for x in ids], dtype=np.int64)


def _kind(column: pa.Array) -> pa.DataType:
    return column.type.value_type if pa.types.is_dictionary(column.type) else column.type


def _is_categorical(column: pa.Array) -> bool:
    kind = _kind(column)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _token_pairs(column: pa.Array, row_code: np.ndarray, known: tuple[str, ...] | None,
                 words: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(item code, token) pairs, one per part of each row's value (`words`: per word of a text),
    and the tokens: those `known` (tokens outside it dropped) or, fitting, the column's own in
    order of appearance."""
    text = pc.utf8_lower(column.cast(pa.string()))
    parts = pc.split_pattern_regex(text, WORD_SPLIT) if words else pc.split_pattern(text, "|")
    parent = np.asarray(pc.list_parent_indices(parts), dtype=np.int64)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = np.asarray(pc.greater_equal(pc.utf8_length(flat), 2 if words else 1).fill_null(False), dtype=bool)
    keep &= row_code[parent] >= 0
    flat = flat.filter(pa.array(keep))
    if known is None:
        encoded = flat.dictionary_encode()
        return row_code[parent][keep], np.asarray(encoded.indices, dtype=np.int64), \
            encoded.dictionary.to_pylist()
    index = np.asarray(pc.index_in(flat, value_set=pa.array(known, pa.string())).fill_null(-1),
                       dtype=np.int64)
    found = index >= 0
    return row_code[parent][keep][found], index[found], list(known)


def _document_frequency(code: np.ndarray, token: np.ndarray, n_tokens: int) -> tuple[np.ndarray, int]:
    """Per token, how many items have it; and how many items have any token."""
    key = np.unique(code * n_tokens + token)
    return np.bincount(key % n_tokens, minlength=n_tokens), len(np.unique(key // n_tokens))


def _idf(df: np.ndarray, described: int) -> np.ndarray:
    return np.log((1.0 + described) / (1.0 + df)) + 1.0


def _fitted_tokens(columns: list[tuple[str, np.ndarray, np.ndarray, list[str]]]) -> tuple[Tokens, ...]:
    """Each categorical column's tokens shared by two items or more; IDF over the items described by
    any categorical column, as one vocabulary."""
    offsets = np.cumsum([0] + [len(tokens) for _, _, _, tokens in columns])
    n_tokens = int(offsets[-1])
    if n_tokens == 0:
        return tuple(Tokens(name, (), ()) for name, _, _, _ in columns)
    code = np.concatenate([c for _, c, _, _ in columns])
    token = np.concatenate([t + offsets[i] for i, (_, _, t, _) in enumerate(columns)])
    df, described = _document_frequency(code, token, n_tokens)
    idf = _idf(df, described)
    out = []
    for i, (name, _, _, tokens) in enumerate(columns):
        kept = [j for j in range(len(tokens)) if df[offsets[i] + j] >= 2]
        out.append(Tokens(name, tuple(tokens[j] for j in kept),
                          tuple(float(idf[offsets[i] + j]) for j in kept)))
    return tuple(out)


def _fitted_words(name: str, column: pa.Array, row_code: np.ndarray) -> Tokens:
    code, token, words = _token_pairs(column, row_code, None, words=True)
    if not words:
        return Tokens(name, (), ())
    df, described = _document_frequency(code, token, len(words))
    ok = np.flatnonzero((df >= 2) & (df <= max(2.0, MAX_WORD_SHARE * described)))
    ok = ok[np.lexsort((ok, -df[ok]))][:MAX_WORDS]  # the commonest, ties by first appearance
    ok.sort()
    idf = _idf(df, described)
    return Tokens(name, tuple(words[j] for j in ok), tuple(float(idf[j]) for j in ok))


def _values(column: pa.Array) -> np.ndarray:
    return np.asarray(column.cast(pa.float64()).fill_null(np.nan), dtype=np.float64)


def _stats(name: str, column: pa.Array, row_code: np.ndarray) -> Numeric | None:
    """A numeric column's mean and deviation over the items, or None where it does not vary."""
    values = _values(column)
    ok = (row_code >= 0) & np.isfinite(values)
    if ok.sum() < 2 or (sd := float(values[ok].std())) == 0.0:
        return None
    return Numeric(name, float(values[ok].mean()), sd)


def _z_scores(column: pa.Array, row_code: np.ndarray, n: int, s: Numeric) -> np.ndarray:
    values = _values(column)
    ok = (row_code >= 0) & np.isfinite(values)
    z = np.zeros(n, np.float32)
    z[row_code[ok]] = np.clip((values[ok] - s.mean) / s.sd, -CLIP_SD, CLIP_SD)
    return z


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
