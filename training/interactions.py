"""Interactions as the recipes see them: integer-coded and sorted by user, then time.

Every recipe, split and metric works on `Interactions`; `from_table` is the one place
where dataset rows (Parquet, CSV, archived PutEvents) become integer codes, and where a
solution's `eventType` / `eventValueThreshold` filters apply and rows without an item
(`with_items`) are left out.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from kernel.contract import MAX_IMPRESSIONS


@dataclass(frozen=True)
class Interactions:
    user: np.ndarray  # int32 user code per interaction
    item: np.ndarray  # int32 item code per interaction
    time: np.ndarray  # int64 Unix seconds
    user_ids: np.ndarray  # code -> USER_ID (str objects)
    item_ids: np.ndarray  # code -> ITEM_ID
    # items shown with each interaction (IMPRESSION), int32 codes [N, K], -1 pads; None: no impressions
    impressions: np.ndarray | None = None
    # each interaction's context (the INTERACTIONS dataset's categorical fields, e.g. DEVICE; the
    # v2 recipes learn it): int32 codes [N, len(context_fields)], 0 for a missing value, else 1 +
    # its index in context_values[field]; None: no context
    context: np.ndarray | None = None
    context_fields: tuple[str, ...] = ()
    context_values: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        assert len(self.user) == len(self.item) == len(self.time)
        assert self.impressions is None or len(self.impressions) == len(self.user)
        assert self.context is None or self.context.shape == (len(self.user), len(self.context_fields))

    def __len__(self) -> int:
        return len(self.user)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def offsets(self) -> np.ndarray:
        """offsets[u]:offsets[u + 1] are user u's rows (rows are sorted by user)."""
        return np.searchsorted(self.user, np.arange(self.n_users + 1)).astype(np.int64)

    def sequences(self) -> list[np.ndarray]:
        """Each user's items in time order."""
        off = self.offsets
        return [self.item[off[u]:off[u + 1]] for u in range(self.n_users)]

    def take(self, rows: np.ndarray) -> Interactions:
        """A subset of rows (a boolean mask or sorted indices), same codes and vocabularies."""
        return dataclasses.replace(self, user=self.user[rows], item=self.item[rows], time=self.time[rows],
                                   impressions=None if self.impressions is None else self.impressions[rows],
                                   context=None if self.context is None else self.context[rows])


def from_table(table: pa.Table, *, event_type: str | None = None,
               event_value_threshold: float | None = None, context: Sequence[str] = ()) -> Interactions:
    """Code an INTERACTIONS table; rows are kept in time order per user, ties in row order.

    `event_type` keeps only that EVENT_TYPE; `event_value_threshold` keeps rows whose
    EVENT_VALUE is at least it (Personalize's solution config). `context`: the columns to code
    as each row's context (Interactions.context)."""
    if event_type is not None and "EVENT_TYPE" in table.column_names:
        table = table.filter(pc.equal(table["EVENT_TYPE"], event_type))
    if event_value_threshold is not None and "EVENT_VALUE" in table.column_names:
        table = table.filter(pc.greater_equal(table["EVENT_VALUE"], event_value_threshold))
    table, _ = with_items(table)
    users = table["USER_ID"].combine_chunks().dictionary_encode()
    items = table["ITEM_ID"].combine_chunks().dictionary_encode()
    user = np.asarray(users.indices, dtype=np.int32)
    item = np.asarray(items.indices, dtype=np.int32)
    time = np.asarray(table["TIMESTAMP"].combine_chunks().cast(pa.int64()), dtype=np.int64)
    order = np.lexsort((np.arange(len(user)), time, user))
    item_ids = np.asarray(items.dictionary.to_pylist(), dtype=object)
    shown = _impressions(table, item_ids)
    fields = [f for f in context if f in table.column_names]
    codes, values = _context(table, fields)
    return Interactions(user[order], item[order], time[order],
                        np.asarray(users.dictionary.to_pylist(), dtype=object), item_ids,
                        None if shown is None else shown[order],
                        None if codes is None else codes[order], tuple(fields), values)


def _context(table: pa.Table, fields: Sequence[str]) -> tuple[np.ndarray | None, tuple[tuple[str, ...], ...]]:
    """The context columns as codes [N, F] (0: missing) and each one's values (code - 1 -> value)."""
    if not fields:
        return None, ()
    codes = np.zeros((table.num_rows, len(fields)), dtype=np.int32)
    values = []
    for j, name in enumerate(fields):
        coded = pc.cast(table[name].combine_chunks(), pa.string()).dictionary_encode()
        codes[:, j] = np.asarray(coded.indices.fill_null(-1), dtype=np.int32) + 1
        values.append(tuple(coded.dictionary.to_pylist()))
    return codes, tuple(values)


def with_items(table: pa.Table) -> tuple[pa.Table, int]:
    """The rows that name an item, and how many did not. ITEM_ID is optional in PutEvents (a
    search, a page view): such a row stays in the archive and exports, but it gives no recipe
    an item to learn, and an item code can only be given to an item."""
    named = table.filter(pc.is_valid(table["ITEM_ID"]))
    return named, table.num_rows - named.num_rows


@dataclass(frozen=True)
class TypedHistory:
    """Each user's newest interactions of every event type (CSR over `user_ids`, time order)."""
    user_ids: np.ndarray  # the trained users, then users only rows left out of training name
    offsets: np.ndarray  # int64 [len(user_ids) + 1]
    items: np.ndarray  # int32 codes in the trained item vocabulary
    types: np.ndarray  # int32 index into type_names
    type_names: np.ndarray  # str: the EVENT_TYPEs lower-cased, "" for a row without one


def typed_history(table: pa.Table, data: Interactions, keep: int) -> TypedHistory:
    """Each user's newest `keep` interactions of each event type, from every row of `table`, not
    only those the solution's eventType / eventValueThreshold kept for `data`: a filter on
    Interactions.EVENT_TYPE shows a "watched" shelf even from a model trained on clicks.
    Event types match ignoring case, so they are kept lower-cased; items outside `data`'s
    vocabulary are left out, as nothing could recommend them."""
    table, _ = with_items(table)
    table = table.filter(pc.is_valid(table["USER_ID"]))
    users = table["USER_ID"].combine_chunks().cast(pa.string())
    trained = pa.array(data.user_ids.tolist(), pa.string())
    others = pc.unique(pc.filter(users, pc.is_null(pc.index_in(users, value_set=trained))))
    user_ids = np.concatenate([data.user_ids, np.asarray(others.to_pylist(), dtype=object)])
    user = pc.index_in(users, value_set=pa.concat_arrays([trained, others]))
    item = pc.index_in(table["ITEM_ID"].combine_chunks().cast(pa.string()),
                       value_set=pa.array(data.item_ids.tolist(), pa.string()))
    types = table["EVENT_TYPE"].combine_chunks().cast(pa.string()) if "EVENT_TYPE" in table.column_names \
        else pa.nulls(table.num_rows, pa.string())
    kinds = pc.utf8_lower(pc.fill_null(types, "")).dictionary_encode()
    known = np.asarray(pc.is_valid(item))
    u = np.asarray(user.fill_null(0), dtype=np.int64)[known]
    i = np.asarray(item.fill_null(0), dtype=np.int32)[known]
    k = np.asarray(kinds.indices, dtype=np.int64)[known]
    t = np.asarray(pc.cast(table["TIMESTAMP"], pa.int64()), dtype=np.int64)[known]
    rows = newest_per_group(u * max(1, len(kinds.dictionary)) + k, t, keep)
    rows = rows[np.lexsort((rows, t[rows], u[rows]))]
    offsets = np.searchsorted(u[rows], np.arange(len(user_ids) + 1)).astype(np.int64)
    return TypedHistory(user_ids, offsets, i[rows], k[rows].astype(np.int32),
                        np.asarray(kinds.dictionary.to_pylist(), dtype=str))


def newest_per_group(group: np.ndarray, time: np.ndarray, keep: int) -> np.ndarray:
    """Indices of the newest `keep` rows of each group (ties: the later row is the newer)."""
    order = np.lexsort((np.arange(len(group)), time, group))
    grouped = group[order]
    after_last = np.searchsorted(grouped, grouped, side="right")
    return order[after_last - np.arange(len(grouped)) <= keep]


def _impressions(table: pa.Table, item_ids: np.ndarray) -> np.ndarray | None:
    """IMPRESSION ("a|b|c") as item codes [N, K]. Shown items that nobody interacted with get no
    code: the model cannot recommend them, so there is nothing to push down."""
    if "IMPRESSION" not in table.column_names or table["IMPRESSION"].null_count == table.num_rows:
        return None
    lists = pc.split_pattern(pc.fill_null(table["IMPRESSION"].combine_chunks(), ""), "|")
    width = min(MAX_IMPRESSIONS, max(1, int(pc.max(pc.list_value_length(lists)).as_py() or 1)))
    code_of = {item: code for code, item in enumerate(item_ids.tolist())}
    out = np.full((table.num_rows, width), -1, dtype=np.int32)
    for row, shown in enumerate(lists.to_pylist()):
        codes = [code_of[i] for i in shown if i in code_of][:width]
        out[row, :len(codes)] = codes
    return out


def read_csv(path: Path, **filters: object) -> Interactions:
    """An interactions CSV in Personalize's schema (the bench reads ../shared/datasets)."""
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
        column_types={"USER_ID": pa.string(), "ITEM_ID": pa.string(), "TIMESTAMP": pa.int64()}))
    return from_table(table, **filters)  # type: ignore[arg-type]


def recode_items(data: Interactions, vocabulary: np.ndarray) -> Interactions:
    """The same rows with item codes in `vocabulary`'s order, items it lacks appended after it
    (an UPDATE keeps its parent's codes, so the parent's embedding rows still fit)."""
    known = {item: code for code, item in enumerate(vocabulary.tolist())}
    new = [x for x in data.item_ids.tolist() if x not in known]
    ids = np.asarray([*vocabulary.tolist(), *new], dtype=object)
    code_of = {item: code for code, item in enumerate(ids.tolist())}
    mapping = np.asarray([code_of[x] for x in data.item_ids.tolist()], dtype=np.int32)
    shown = None if data.impressions is None else \
        np.where(data.impressions >= 0, mapping[np.maximum(data.impressions, 0)], -1).astype(np.int32)
    return dataclasses.replace(data, item=mapping[data.item], item_ids=ids, impressions=shown)


def with_catalog(data: Interactions, item_ids: Sequence[str]) -> Interactions:
    """The same rows with the catalogue's items that nobody has interacted with yet appended to
    the vocabulary (after the existing codes, which stay put). A model can only serve an item
    that has a code, and aws-similar-items is meant to give new items neighbours from their
    metadata alone."""
    known = set(data.item_ids.tolist())
    new = [x for x in dict.fromkeys(item_ids) if x is not None and x not in known]
    if not new:
        return data
    ids = np.empty(data.n_items + len(new), dtype=object)
    ids[:data.n_items], ids[data.n_items:] = data.item_ids, new
    return dataclasses.replace(data, item_ids=ids)
