"""Poison inputs for the parsers behind the API's doors, from hypothesis (derandomized: the same
examples every run): the filter expression parser and its evaluation, the Avro schema checks of
CreateSchema and the schema checks of PutItems/PutUsers properties, the CSV import's checks, and
the PutEvents wire model. A user who sends any of this gets a 400 (or a failed job) naming what
to fix: so each parser must answer or raise its own error type, never another exception (the API
answers those 500), and must answer quickly whatever it is given (no hang).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from poison import (
    FUZZ,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    Draw,
    Ids,
    json_values,
    nested,
    put_events,
    put_items,
    put_users,
    with_nested,
)
from pydantic import ValidationError

from kernel.contract import MAX_EPOCH_SECONDS, decode, decode_event, encode
from kernel.dataset_schema import (
    DATASET_TYPES,
    Column,
    Schema,
    SchemaError,
    check_dataset_type,
    infer_schema,
    parse_schema,
    record_fields,
)
from kernel.datasets import DatasetStore
from serving.filters import MAX_DEPTH, Catalog, Filter, FilterError, FilterValueError, allowed, parse
from serving.service_model import Refused
from serving.wire import PutEventsRequest, PutItemsRequest, PutUsersRequest, to_event, to_record
from training.importer import (
    BadRows,
    Imported,
    ImportFailed,
    check_column,
    convert_batch,
    import_csv,
    read_header,
    user_ids,
)

T = TypeVar("T")
SLOW_S = 2.0  # no parse of one input may take this long, even on a busy CI machine
MAX_EXPRESSION = 2_500  # botocore's limit on filterExpression
MAX_FILTER_VALUE = 1_000  # ... and on each filterValues entry


def quickly(fn: Callable[[], T]) -> T:
    """fn(), which must return (or raise) within SLOW_S."""
    start = time.perf_counter()
    try:
        return fn()
    finally:
        assert time.perf_counter() - start < SLOW_S, f"took {time.perf_counter() - start:.1f}s"


def outcome(fn: Callable[[], T], *errors: type[Exception]) -> T | Exception:
    """fn()'s value, or the error it raised if it is one of `errors`; any other escapes (and fails)."""
    try:
        return quickly(fn)
    except errors as exc:
        return exc


# ---- filter expressions (CreateFilter) and their evaluation (GetRecommendations) ----

def case(word: str) -> st.SearchStrategy[str]:
    """A keyword or dataset name as users type it: the language ignores their case."""
    return st.sampled_from([word, word.upper(), word.lower(), word.capitalize()])


SPACE = st.sampled_from([" ", " ", "  ", "\t", "\n", " \r\n "])
QUOTED = st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
NUMBER = st.one_of(st.integers(-10**6, 10**6).map(str), st.decimals(-1000, 1000, places=3).map(
    lambda d: f"{d:f}"))
PARAM = st.from_regex(r"\$[A-Za-z0-9_]{1,12}", fullmatch=True)


@st.composite
def condition(draw: Draw, dataset: str) -> list[str]:
    """One condition the developer guide allows, as tokens."""
    if dataset == "Interactions":
        op = draw(st.sampled_from(["IN", "NOT IN", "=", "!="]))
        values = st.one_of(QUOTED, st.just('"*"'), *([] if op == "NOT IN" else [PARAM]))
        name = [draw(case("Interactions")), ".", draw(case("EVENT_TYPE"))]
    elif dataset == "CurrentUser":
        op = draw(st.sampled_from(["IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="]))
        values = NUMBER if op in ("<", "<=", ">", ">=") else st.one_of(
            QUOTED.filter(lambda q: q != '"*"'), NUMBER, *([] if op == "NOT IN" else [PARAM]))
        name = [draw(case("CurrentUser")), ".", draw(st.sampled_from(["AGE", "TIER"]))]
    else:
        op = draw(st.sampled_from(["IN", "NOT IN", "=", "!=", "<", "<=", ">", ">="]))
        if op in ("<", "<=", ">", ">="):
            values = st.one_of(NUMBER, PARAM, st.just("CurrentItem.PRICE"))
        else:
            values = st.one_of(QUOTED.filter(lambda q: q != '"*"'), NUMBER, st.just("CurrentItem.GENRES"),
                               *([] if op == "NOT IN" else [PARAM]))
        name = [draw(case("Items")), ".", draw(st.sampled_from(["GENRES", "PRICE", "genres"]))]
    if op in ("<", "<=", ">", ">="):
        operand = [draw(values)]
    else:
        many = draw(st.lists(values, min_size=1, max_size=4))
        operand = ["(", *sum(([v, ","] for v in many), [])[:-1], ")"] if draw(st.booleans()) else many[:1]
    return [*name, *op.split(), *operand]


def junction(dataset: str, depth: int) -> st.SearchStrategy[list[str]]:
    """Conditions joined by AND and OR, parenthesized up to `depth` deep."""
    if depth == 0:
        return condition(dataset)
    inner = junction(dataset, depth - 1)
    parts = st.lists(st.one_of(condition(dataset), inner.map(lambda t: ["(", *t, ")"])),
                     min_size=1, max_size=3)
    joins = st.lists(st.sampled_from(["AND", "OR", "and", "Or"]), min_size=2, max_size=2)
    return st.tuples(parts, joins).map(lambda pj: sum(
        ([*p, pj[1][i % 2]] for i, p in enumerate(pj[0])), [])[:-1])


@st.composite
def statement(draw: Draw) -> list[str]:
    dataset = draw(st.sampled_from(["Items", "Interactions"]))
    action = draw(case(draw(st.sampled_from(["INCLUDE", "EXCLUDE"]))))
    where = draw(junction(dataset, draw(st.integers(0, 2))))
    tokens = [action, draw(case("ItemID")), draw(case("WHERE")), *where]
    if draw(st.booleans()):
        whens = draw(st.lists(condition("CurrentUser"), min_size=1, max_size=2))
        tokens += ["IF", *sum(([*w, "AND"] for w in whens), [])[:-1]]
    return tokens


FILTER_TOKENS = st.lists(statement(), min_size=1, max_size=3).map(
    lambda ss: sum(([*s, "|"] for s in ss), [])[:-1])
VOCABULARY = ["INCLUDE", "EXCLUDE", "ItemID", "WHERE", "Items", "Interactions", "CurrentUser", "CurrentItem",
              "Users", "EVENT_TYPE", "GENRES", ".", "IN", "NOT", "AND", "OR", "IF", "(", ")", ",", "|", "=",
              "!=", "<", "<=", ">", ">=", '"a"', '"', "\\", '"*"', "$P", "$", "1.5", "-", "-1", "1e5",
              "ActionID", "\u00e9", "\x00", ";", "'x'"]


def joined(draw: Draw, tokens: list[str]) -> str:
    """The tokens as a user types them: any whitespace between, newlines included."""
    return "".join(t + draw(SPACE) for t in tokens).strip(" ")


@st.composite
def valid_expressions(draw: Draw) -> str:
    """Filters the developer guide's grammar and rules allow (at most 5 fields, one dataset per
    expression, parameters never with NOT IN, CurrentItem only against Items), up to 3 chained."""
    return joined(draw, draw(FILTER_TOKENS))


@st.composite
def near_valid_expressions(draw: Draw) -> str:
    """A valid expression with one to three mistakes: a token dropped, repeated, swapped, replaced
    with another of the language's, or the text cut short."""
    tokens = draw(FILTER_TOKENS)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(tokens) - 1))
        how = draw(st.sampled_from(["drop", "repeat", "swap", "replace", "insert"]))
        if how == "drop" and len(tokens) > 1:
            del tokens[i]
        elif how == "repeat":
            tokens.insert(i, tokens[i])
        elif how == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        else:
            word = draw(st.sampled_from(VOCABULARY))
            tokens[i:i + (how == "replace")] = [word]
    text = joined(draw, tokens)
    return text[:draw(st.integers(0, len(text)))] if draw(st.integers(0, 4)) == 0 else text


TOKEN_SOUP = st.lists(st.sampled_from(VOCABULARY), max_size=400).map(" ".join)
ANY_TEXT = st.one_of(st.text(max_size=MAX_EXPRESSION), TOKEN_SOUP, st.text(st.sampled_from('()"\\$.,|<>=! '),
                                                                          max_size=MAX_EXPRESSION))


def parsed(expression: str) -> Filter | FilterError:
    """parse(), which answers a Filter or a FilterError with a column in the text and a caret."""
    answer = outcome(lambda: parse(expression), FilterError)
    if isinstance(answer, FilterError):
        assert answer.column is None or 1 <= answer.column <= len(expression) + 1, (answer.column, expression)
        assert str(answer) and "\n" in str(answer)  # the message, and a caret line under the mistake
    return answer


@FUZZ
@given(ANY_TEXT)
@example("(" * MAX_EXPRESSION)
@example('INCLUDE ItemID WHERE Items.GENRES IN ("' + "\\" * 2_400)
@example("INCLUDE ItemID WHERE " + "Items.GENRES IN (1) AND " * 100 + "Items.GENRES IN (1)")
@example("INCLUDE ItemID WHERE " + "(" * (MAX_DEPTH + 1) + 'Items.GENRES IN ("x")' + ")" * (MAX_DEPTH + 1))
@example("EXCLUDE ItemID WHERE Items.G IN (" + "1," * 1_000 + "1)")
def test_any_text_is_a_filter_or_a_filter_error_pointing_at_the_mistake(expression: str) -> None:
    parsed(expression)


@FUZZ
@given(valid_expressions())
def test_every_expression_the_developer_guide_allows_is_a_filter(expression: str) -> None:
    answer = parsed(expression)
    assert isinstance(answer, Filter), f"{expression!r}: {answer}"
    assert answer.expression == expression


@FUZZ
@given(near_valid_expressions())
def test_an_expression_with_a_mistake_is_a_filter_or_a_filter_error(expression: str) -> None:
    parsed(expression)


CATALOG = Catalog.build(6, {"GENRES": ["Comedy|Drama", "", None, "Horror", "1", "a|b|c"],
                            "PRICE": [9.5, None, 0, -1, "12", "NaN"]})
FILTER_VALUES = st.one_of(st.text(max_size=MAX_FILTER_VALUE),
                          st.lists(st.one_of(QUOTED, NUMBER), max_size=30).map(",".join),
                          st.sampled_from(['"', '\\"', ',', '"a",', ' ' * 1_000, '"' * 999 + "x",
                                           ", " * 500]))
PARAMETERS = st.dictionaries(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True), FILTER_VALUES, max_size=5)
INTERACTED = st.lists(st.tuples(st.integers(-2, 8), st.sampled_from(["click", "CLICK", "watch", "*"])),
                      max_size=20)
USER_VALUES = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=10))


@FUZZ
@given(valid_expressions(), PARAMETERS, INTERACTED,
       st.one_of(st.none(), st.dictionaries(st.sampled_from(["AGE", "age", "TIER"]), USER_VALUES,
                                            max_size=3)),
       st.one_of(st.none(), st.integers(-3, 9)))
def test_evaluating_a_filter_answers_a_mask_or_names_the_bad_filter_value(
        expression: str, values: dict[str, str], interactions: list[tuple[int, str]],
        user: dict[str, Any] | None, current_item: int | None) -> None:
    """GetRecommendations' filterValues are the user's text too (at most 1,000 characters each)."""
    f = parse(expression)  # the filter's own parameters get values too, else most would go unused
    params = {p: v for p, v in zip(sorted(f.parameters), values.values(), strict=False)} | values
    mask = outcome(lambda: allowed(f, CATALOG, values=params, interactions=interactions, user=user,
                                   current_item=current_item), FilterValueError)
    if not isinstance(mask, Exception):
        assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (CATALOG.n_items,)


# ---- Avro schemas (CreateSchema) and the properties of PutItems / PutUsers ----

NAMES = st.one_of(st.sampled_from(["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE",
                                   "IMPRESSION", "CREATION_TIMESTAMP", "RECOMMENDATION_ID", "GENRES",
                                   "genres", "Genres_", "userId", "SESSION_ID", "_x", "A1", "1A", "", "a b",
                                   "\u00e9t\u00e9", "x" * 257]), st.text(max_size=10), json_values(3))
TYPES = st.one_of(st.sampled_from(["string", "int", "long", "float", "double", "boolean", "null", "bytes",
                                   "record", "STRING", ["null", "string"], ["string", "null"], ["string"],
                                   ["null"], ["int", "long"], ["null", "string", "int"], [],
                                   {"type": "string"}, {"type": "array", "items": "string"},
                                   ["null", {"type": "int"}]]),
                  json_values(4))
FLAGS = st.one_of(st.booleans(), st.none(), st.sampled_from(["true", 1, 0, [], {}]))


@st.composite
def fields(draw: Draw) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values(4))
    out = {"name": draw(NAMES), "type": draw(TYPES)}
    for flag in ("categorical", "textual", "default", "doc"):
        if draw(st.integers(0, 3)) == 0:
            out[flag] = draw(FLAGS)
    return out


@st.composite
def records(draw: Draw) -> str:
    """An Avro record as CreateSchema gets it: near a valid Personalize schema, or far from one."""
    doc: dict[str, Any] = {"type": draw(st.sampled_from(["record", "record", "Record", "enum", None])),
                           "name": draw(st.one_of(st.sampled_from(["Items", "com.x.Y", "1x", "", "a..b"]),
                                                  json_values(2))),
                           "fields": draw(st.one_of(st.lists(fields(), max_size=8), json_values(3)))}
    if draw(st.booleans()):
        doc["namespace"] = draw(st.one_of(
            st.sampled_from(["com.amazonaws.personalize.schema", "", "9a", "a."]), json_values(2)))
    if draw(st.booleans()):
        doc["version"] = draw(st.sampled_from(["1.0", 1, None]))
    return json.dumps({k: v for k, v in doc.items() if v is not None})


GOOD_FIELDS = [{"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
               {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
               {"name": "EVENT_VALUE", "type": ["null", "float"]},
               {"name": "IMPRESSION", "type": ["null", "string"]},
               {"name": "CREATION_TIMESTAMP", "type": "long"}, {"name": "PRICE", "type": "double"},
               {"name": "GENRES", "type": ["null", "string"], "categorical": True},
               {"name": "DESCRIPTION", "type": ["null", "string"], "textual": True},
               {"name": "AGE", "type": ["int"]}, {"name": "active", "type": "boolean"}]


@st.composite
def personalize_schemas(draw: Draw) -> str:
    """Schemas as the developer guide writes them, for any dataset type, with up to two mistakes."""
    fields_ = [dict(f) for f in draw(st.lists(st.sampled_from(GOOD_FIELDS), min_size=1, max_size=8,
                                              unique_by=lambda f: f["name"]))]
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(["type", "categorical", "textual", "name"]))
        draw(st.sampled_from(fields_))[key] = draw({"type": TYPES, "name": NAMES}.get(key, FLAGS))
    return json.dumps({"type": "record", "name": draw(st.sampled_from(["Interactions", "Items", "Users"])),
                       "namespace": "com.amazonaws.personalize.schema", "fields": fields_, "version": "1.0"})


def schema_of(text: str) -> Schema | SchemaError:
    return outcome(lambda: parse_schema(text), SchemaError)


@FUZZ
@given(st.one_of(st.text(max_size=2_000), json_values().map(json.dumps), records(), personalize_schemas()))
@example("x" * 20_001)
@example(json.dumps({"type": "record", "name": "R", "fields": [{"name": "A", "type": "string"}] * 300}))
def test_any_text_is_a_schema_or_a_schema_error(text: str) -> None:
    schema = schema_of(text)
    if isinstance(schema, Schema):
        for dataset_type in (*DATASET_TYPES, "ACTIONS", "OTHER"):
            outcome(lambda t=dataset_type: check_dataset_type(schema, t), SchemaError)


NESTINGS = [(depth, where) for depth in (50, 500, 900, 990, 1_000, 1_100, 5_000)
            for where in ("document", "fields", "field", "type", "name", "namespace", "flag")]


@pytest.mark.parametrize("depth, where", NESTINGS)
def test_a_schema_nested_deep_anywhere_is_a_schema_error(depth: int, where: str) -> None:
    """A CreateSchema of 10,000 characters can nest 5,000 deep; Python's JSON parser gives up at
    1,000 with RecursionError, which was once a 500."""
    deep = "@deep@"
    field = {"name": "GENRES", "type": "string", "categorical": deep if where == "flag" else True}
    doc = {"type": "record", "name": deep if where == "name" else "Items",
           "namespace": deep if where == "namespace" else "n",
           "fields": deep if where == "fields" else [
               {"name": "ITEM_ID", "type": deep if where == "type" else "string"},
               deep if where == "field" else field]}
    text = nested(depth) if where == "document" else json.dumps(doc).replace(f'"{deep}"', nested(depth))
    assert isinstance(schema_of(text), SchemaError)


ITEMS = parse_schema(ITEMS_SCHEMA)
USERS = parse_schema(USERS_SCHEMA)
PROPERTY_KEYS = st.one_of(st.sampled_from(["genres", "GENRES", "price", "Price", "stock", "age", "AGE",
                                           "tier", "itemId", "ITEM_ID", "userId", "color"]),
                          st.text(max_size=8))


@FUZZ
@given(st.sampled_from([("ITEMS", ITEMS), ("USERS", USERS)]),
       st.dictionaries(PROPERTY_KEYS, json_values(8), max_size=6).map(json.dumps))
@example(("ITEMS", ITEMS), with_nested("genres", 990))
@example(("ITEMS", ITEMS), json.dumps({"price": 10**30}))
def test_record_properties_fit_the_schema_or_name_the_property(dataset: tuple[str, Schema], text: str
                                                                ) -> None:
    """What PutItems/PutUsers do with `properties` (read by orjson, as the route reads them); what
    they accept must become a record the log stores and every consumer reads back."""
    dataset_type, schema = dataset
    fields_ = outcome(lambda: record_fields(schema, dataset_type, orjson.loads(text)), SchemaError)
    if isinstance(fields_, dict):
        record = to_record("g", dataset_type, "id", fields_, 0.0)
        assert decode(f"opz.g.{dataset_type.lower()}", encode(record)) == record


HEADERS = st.lists(st.one_of(st.sampled_from(["USER_ID", "item_id", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE",
                                              "GENRES", "", " ", "1x", "a b", "userId"]),
                             st.text(max_size=8)), max_size=8)


@FUZZ
@given(st.sampled_from(DATASET_TYPES), HEADERS,
       st.lists(st.lists(st.one_of(st.text(max_size=8), st.integers().map(str), st.just("")), max_size=9),
                max_size=6))
def test_an_inferred_schema_is_one_parse_schema_accepts_or_a_schema_error(
        dataset_type: str, header: list[str], sample: list[list[str]]) -> None:
    """`personalize import` writes a schema for a CSV the user has not written one for."""
    text = outcome(lambda: infer_schema(dataset_type, header, sample), SchemaError)
    if isinstance(text, str):
        check_dataset_type(parse_schema(text), dataset_type)


# ---- the PutEvents / PutItems / PutUsers wire models ----

IN_THE_ROUTE = {"unknownTracker", "events", "datasetArn", "otherDataset"}  # what only the route can check


def request_of(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:  # not JSON: the app's body parser refuses it (tests/e2e/test_fuzz.py)
        return None


@FUZZ
@given(put_events("tracker", Ids()))
def test_a_put_events_body_is_refused_or_its_events_go_into_the_log_as_sent(body: Any) -> None:
    request = request_of(body.content)
    if not isinstance(request, dict):
        return
    wire = outcome(lambda: PutEventsRequest.model_validate(request), ValidationError, Refused)
    if body.well_formed or set(body.why.split(", ")) <= IN_THE_ROUTE:
        assert isinstance(wire, PutEventsRequest), f"{body.why}: {wire}"
    if not isinstance(wire, PutEventsRequest):
        assert not body.well_formed, wire
        return
    for ev, want in zip(wire.eventList, body.events or [None] * len(wire.eventList), strict=True):
        stored = decode_event(encode(to_event(wire, ev, dataset_group="g", now=1.0)))
        if want is not None:
            assert (stored.event_id, stored.user_id, stored.session_id, stored.item_id, stored.event_type,
                    int(stored.sent_at)) == tuple(want.values())


@FUZZ
@given(st.one_of(put_items("arn:aws:personalize:us-east-1:000000000000:dataset/g/ITEMS", "users"),
                 put_users("arn:aws:personalize:us-east-1:000000000000:dataset/g/USERS", "items")))
def test_a_put_items_or_put_users_body_is_refused_or_becomes_records_as_sent(body: Any) -> None:
    request = request_of(body.content)
    if not isinstance(request, dict):
        return
    items = body.path == "/items"
    model, kind, schema = (PutItemsRequest, "ITEMS", ITEMS) if items else (PutUsersRequest, "USERS", USERS)
    wire = outcome(lambda: model.model_validate(request), ValidationError, Refused)
    if body.well_formed:
        assert isinstance(wire, model), wire
    if not isinstance(wire, model):
        return
    entries = [(e.itemId, e.properties) for e in wire.items] if items else [(e.userId, e.properties)
                                                                           for e in wire.users]
    for id_, properties in entries:  # what the route does with each entry (serving/events_api.py)
        fields_ = outcome(lambda p=properties: record_fields(schema, kind, orjson.loads(p) if p else {}),
                          SchemaError)
        assert not body.well_formed or isinstance(fields_, dict), fields_
        if isinstance(fields_, dict):
            record = to_record("g", kind, id_, fields_, 0.0)
            assert decode(f"opz.g.{kind.lower()}", encode(record)) == record


# ---- the CSV import (CreateDatasetImportJob, CreateDataDeletionJob) ----

CELLS = st.one_of(st.none(), st.text(max_size=12), st.integers(-(2**65), 2**65).map(str),
                  st.integers(-(2**65), 2**65).map(lambda n: f" +{n} " if n >= 0 else f"{n}  "),
                  st.floats().map(str), st.floats(width=32).map(repr),
                  st.sampled_from(["", " ", "1e39", "1e999", "-1e999", ".5", "5.", "TRUE", "yes", "\u0661",
                                   "\uff11", "99999999999", "9999999999", "2147483648", "-2147483649",
                                   "9223372036854775808", "-9223372036854775808", "1700000000000",
                                   "x" * 300]))
COLUMNS = [Column("USER_ID", "string", False), Column("ITEM_ID", "string", False),
           Column("NOTE", "string", True),
           Column("TIMESTAMP", "long", False), Column("CREATION_TIMESTAMP", "long", True),
           Column("N", "int", True), Column("L", "long", False), Column("F", "float", True),
           Column("D", "double", True), Column("B", "boolean", True)]
RANGE = {"int": 2**31, "long": 2**63}


@FUZZ
@given(st.sampled_from(COLUMNS), st.lists(CELLS, min_size=1, max_size=20))
@example(COLUMNS[5], ["+7", "2147483647", "2147483648", "-2147483649", "9999999999"])
@example(COLUMNS[6], ["+0", "9223372036854775807", "9223372036854775808", "-9223372036854775809"])
@example(COLUMNS[3], ["-9223372036854775808", "-99999999999", "-100000000000"])
def test_every_cell_is_converted_or_counted_as_invalid(col: Column, cells: list[str | None]) -> None:
    """check_column: a "+5" or a value past its type's range (both fit the pattern) once made
    Arrow's cast fail the whole import, where every other bad value is one skipped row; and
    -2**63 passed as a TIMESTAMP in seconds (abs() wraps)."""
    out, problems = quickly(lambda: check_column(pa.array(cells, pa.string()), col))
    assert len(out) == len(cells)
    bad = [any(mask[i].as_py() for mask, _ in problems) for i in range(len(cells))]
    for cell, value, invalid in zip(cells, out.to_pylist(), bad, strict=True):
        if invalid:
            continue
        if not col.nullable:
            assert value is not None, cell
        if col.name.endswith("_ID"):
            assert len(value) <= 256
        if col.type in RANGE and value is not None:
            assert -RANGE[col.type] <= value < RANGE[col.type] and value == int(cell), cell  # type: ignore[arg-type]
        if col.name.endswith("TIMESTAMP") and value is not None:
            assert abs(value) < MAX_EPOCH_SECONDS, cell


def test_a_number_past_its_types_range_is_one_skipped_row_not_a_failed_import(
        files: Callable[[bytes], Path]) -> None:
    good = "".join(f"i{n},{n}\n" for n in range(30))
    path = files(f"ITEM_ID,STOCK\n{good}big,9223372036854775808\nplus,+5\n".encode())
    store = DatasetStore(path.parent / "datasets")
    done = import_csv(store, [path], job_id="job", location=str(path), dataset_group="g",
                      dataset_type="ITEMS", schema=ITEMS, replace=True, progress=lambda **_: None)
    assert (done.rows, done.skipped) == (31, 1)
    assert "STOCK is not a long: 1. The first is row 31 (line 32 of" in done.summary
    assert store.read("g", "ITEMS", "BULK").to_pylist()[-1] == {"ITEM_ID": "plus", "GENRES": None,
                                                                 "PRICE": None, "STOCK": 5}


BATCH_SCHEMA = Schema("R", tuple(COLUMNS))


@FUZZ
@given(st.lists(st.tuples(*[CELLS] * len(COLUMNS)), min_size=1, max_size=12),
       st.permutations([c.name for c in COLUMNS]))
def test_a_batch_keeps_each_row_or_counts_it_invalid_once(rows: list[tuple[str | None, ...]],
                                                         order: list[str]) -> None:
    names = [c.name for c in COLUMNS]
    batch = pa.record_batch([pa.array([r[names.index(n)] for r in rows], pa.string()) for n in order],
                            names=order)
    bad = BadRows()
    out = quickly(lambda: convert_batch(batch, BATCH_SCHEMA, 1, "f.csv", bad))
    assert out.num_rows + bad.count == len(rows)
    assert out.schema.names == names


CSV_TEXT = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(str.encode),
    st.lists(st.lists(st.one_of(CELLS.map(lambda c: c or ""),
                                st.sampled_from(['"', '""', '"a,b"', "\r", "\n", '"x\ny"', "\\", "\ufeff"])),
                      max_size=6), max_size=12).map(lambda rows: "\n".join(map(",".join, rows)).encode()))
HEADER_LINES = st.one_of(st.just(b""), st.sampled_from([
    b"ITEM_ID,GENRES,PRICE,STOCK\n", b"item_id,genres\r\n", b"\xef\xbb\xbfITEM_ID\n", b",ITEM_ID,PRICE\n",
    b"ITEM_ID,ITEM_ID\n", b"ITEM_ID,COLOR\n", b"USER_ID\n"]))


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Callable[[bytes], Path]]:
    """A CSV file with the given bytes (one folder for all of a test's examples)."""
    count = iter(range(10**9))

    def write(content: bytes) -> Path:
        path = tmp_path / f"f{next(count)}.csv"
        path.write_bytes(content)
        return path

    yield write


# A row of the wrong width that is not UTF-8 either: pyarrow cannot decode it for the importer's
# invalid-row handler, reports that as unraisable and fails the read, so the job fails naming
# the row (ImportFailed), as for any other text that is not UTF-8
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@FUZZ
@given(HEADER_LINES, CSV_TEXT)
def test_any_csv_file_imports_or_fails_the_job_naming_why(files: Callable[[bytes], Path], header: bytes,
                                                          content: bytes) -> None:
    path = files(header + content)
    store = DatasetStore(path.parent / "datasets")
    outcome(lambda: read_header(path, ITEMS), ImportFailed)
    done = outcome(lambda: import_csv(store, [path], job_id="job", location=str(path), dataset_group="g",
                                      dataset_type="ITEMS", schema=ITEMS, replace=True,
                                      progress=lambda **_: None), ImportFailed)
    if isinstance(done, Imported):
        assert store.read("g", "ITEMS", "BULK").num_rows == done.rows
    deletion = outcome(lambda: user_ids([path]), ImportFailed)
    assert isinstance(deletion, ImportFailed | list)


DEPTHS = (1, 31, 32, 33, 100, 198, 199, 200, 300, 511, 999, 1_023, 1_100)


@pytest.mark.parametrize("key", ["a", "eventValue", "itemId"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_put_events_properties_nested_deep_are_refused_at_the_door_or_stored(key: str, depth: int) -> None:
    """`properties` of 1,024 characters nest 511 deep. Once the door let 200 through, and then
    the log could not serialize the event (a 500); from 255 on the check of `eventValue` itself
    raised TypeError (a 500)."""
    request = {"trackingId": "t", "sessionId": "s", "eventList": [
        {"eventType": "click", "sentAt": 1.7e9, "properties": with_nested(key, depth)}]}
    wire = outcome(lambda: PutEventsRequest.model_validate(request), ValidationError, Refused)
    if isinstance(wire, PutEventsRequest):
        event = to_event(wire, wire.eventList[0], dataset_group="g", now=1.0)
        assert decode_event(encode(event)) == event


@pytest.mark.parametrize("kind", ["ITEMS", "USERS"])
@pytest.mark.parametrize("depth", DEPTHS)
def test_put_items_and_users_properties_nested_deep_are_refused(kind: str, depth: int) -> None:
    """32,000 characters of PutItems `properties` nest up to 1,023 deep for orjson; naming what is
    wrong with one once took json.dumps past Python's recursion limit (a 500)."""
    model, schema, key = (PutItemsRequest, ITEMS, "genres") if kind == "ITEMS" else (
        PutUsersRequest, USERS, "age")
    entry = {("itemId" if kind == "ITEMS" else "userId"): "x", "properties": with_nested(key, depth)}
    request = {"datasetArn": "arn:aws:personalize:us-east-1:000000000000:dataset/g/X", kind.lower(): [entry]}
    wire = outcome(lambda: model.model_validate(request), ValidationError, Refused)
    if isinstance(wire, model):
        properties = orjson.loads(entry["properties"])
        assert isinstance(outcome(lambda: record_fields(schema, kind, properties), SchemaError), SchemaError)
