"""The checks of a CSV import (training.importer): per column on in-memory Arrow arrays, the
header, and which rows a job imports, skips or fails on."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from kernel.dataset_schema import Column, Schema, SchemaError, check_dataset_type, infer_schema, parse_schema
from kernel.datasets import DatasetStore
from training.importer import (
    MAX_INVALID_PERCENT,
    BadRows,
    Imported,
    ImportFailed,
    check_column,
    convert_batch,
    import_csv,
    read_header,
)


def bad_cells(values: list[str | None], col: Column) -> list[tuple[int, str]]:
    _, problems = check_column(pa.array(values, pa.string()), col)
    return sorted((i, why) for mask, why in problems for i, bad in enumerate(mask.to_pylist()) if bad)


def test_numbers_must_parse_as_the_fields_type() -> None:
    assert bad_cells(["1", " -2 ", "3.5", "x", None], Column("N", "int", True)) == [
        (2, "is not an int"), (3, "is not an int")]
    assert bad_cells(["99999999999", "1"], Column("N", "int", True)) == [(0, "is not an int")]
    assert bad_cells(["99999999999", "1e3", ".5"], Column("N", "long", True)) == [
        (1, "is not a long"), (2, "is not a long")]
    assert bad_cells(["1", "1.5", "-2e-3", ".5", "nan"], Column("F", "float", True)) == [
        (4, "is not a float")]
    assert bad_cells(["true", "False", "1", "0", "yes"], Column("B", "boolean", True)) == [
        (4, "is not a boolean")]


def test_converted_values_have_the_fields_type() -> None:
    out, _ = check_column(pa.array([" 7", "-1", None]), Column("N", "int", True))
    assert out.type == pa.int32() and out.to_pylist() == [7, -1, None]
    out, _ = check_column(pa.array(["TRUE", "0"]), Column("B", "boolean", True))
    assert out.to_pylist() == [True, False]


def test_timestamps_are_epoch_seconds_before_or_after_1970_not_milliseconds() -> None:
    ts = Column("TIMESTAMP", "long", False)
    assert bad_cells(["1700000000", "-94694400", "1700000000000", "2024-01-01"], ts) == [
        (2, "is not Unix epoch seconds (milliseconds?)"), (3, "is not a long (Unix epoch seconds)")]


def test_required_fields_and_id_lengths() -> None:
    user = Column("USER_ID", "string", False)
    assert bad_cells(["u1", None, "x" * 257, "x" * 256], user) == [
        (1, "is empty but the field is required"), (2, "is longer than 256 characters")]
    assert bad_cells([None], Column("NOTE", "string", True)) == []


def test_a_batch_keeps_its_valid_rows_and_counts_the_invalid_ones_once_each() -> None:
    schema = parse_schema('{"type": "record", "name": "R", "fields": [{"name": "USER_ID", "type": "string"},'
                          '{"name": "ITEM_ID", "type": "string"}, {"name": "TIMESTAMP", "type": "long"}]}')
    batch = pa.record_batch([pa.array(["1", "2", "x"]), pa.array(["u", None, None]),
                             pa.array(["i", "j", "k"])], names=["TIMESTAMP", "USER_ID", "ITEM_ID"])
    bad = BadRows()
    out = convert_batch(batch, schema, 1, "f.csv", bad)
    assert bad.count == 2  # row 2 has one bad cell, row 3 two
    assert bad.reasons == {"USER_ID is empty but the field is required": 2,
                           "TIMESTAMP is not a long (Unix epoch seconds)": 1}
    assert bad.first == "row 2 (line 3 of f.csv), column USER_ID: is empty but the field is required"
    assert out.schema.names == ["USER_ID", "ITEM_ID", "TIMESTAMP"]
    assert out.to_pylist() == [{"USER_ID": "u", "ITEM_ID": "i", "TIMESTAMP": 1}]
    good = BadRows()
    assert convert_batch(batch.slice(0, 1), schema, 1, "f.csv", good).num_rows == 1 and good.count == 0


# ---- the header ----

ITEMS = parse_schema(json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "GENRE", "type": "string", "categorical": True},
    {"name": "YEAR", "type": "int"}, {"name": "CREATION_TIMESTAMP", "type": ["null", "long"]}]}))


def header(tmp_path: Path, line: str) -> list[str]:
    (path := tmp_path / "h.csv").write_text(line + "\n")
    return read_header(path, ITEMS)


def test_header_names_match_fields_in_any_case(tmp_path: Path) -> None:
    assert header(tmp_path, "item_id,Genre,YEAR,creation_timestamp") == [
        "ITEM_ID", "GENRE", "YEAR", "CREATION_TIMESTAMP"]


def test_a_column_with_an_empty_name_is_ignored_wherever_it_is(tmp_path: Path) -> None:
    assert header(tmp_path, ",ITEM_ID,GENRE,YEAR") == ["", "ITEM_ID", "GENRE", "YEAR"]  # pandas' index
    assert header(tmp_path, 'ITEM_ID,"",GENRE,YEAR, ') == ["ITEM_ID", "", "GENRE", "YEAR", ""]


@pytest.mark.parametrize("line, problem", [
    ("ITEM_ID,GENRE,YEAR,COLOR", "header column 'COLOR' is not a field of the schema"),
    ("ITEM_ID,GENRE", "header lacks required column(s) YEAR"),
    (",GENRE,YEAR", "header lacks required column(s) ITEM_ID"),
    ("ITEM_ID,GENRE,YEAR,year", "header names a column twice"),
    ("ITEM-ID,GENRE,YEAR", "header column 'ITEM-ID' is not a field"),
])
def test_a_header_that_does_not_fit_the_schema_fails(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ImportFailed) as failed:
        header(tmp_path, line)
    assert problem in str(failed.value)


# ---- which rows a job imports ----

def run_import(tmp_path: Path, *texts: str, schema: Schema = ITEMS) -> Imported:
    files = []
    for n, text in enumerate(texts):
        (path := tmp_path / f"part{n}.csv").write_text(text)
        files.append(path)
    return import_csv(DatasetStore(tmp_path / "datasets"), files, job_id="job", location=str(tmp_path),
                      dataset_group="g", dataset_type="ITEMS", schema=schema, replace=True,
                      progress=lambda **_: None)


def imported_rows(tmp_path: Path) -> list[dict[str, Any]]:
    return DatasetStore(tmp_path / "datasets").read("g", "ITEMS", "BULK").to_pylist()


def poc_items(rows: int = 200) -> str:
    """Shaped like POC_in_a_box 02's item metadata: a YEAR cut out of the title, missing for a few
    movies and a range for one."""
    lines = ["ITEM_ID,GENRE,YEAR"] + [f"{n},Comedy|Drama,{1950 + n % 70}" for n in range(1, rows + 1)]
    for n in (7, 50, 51):
        lines[n] = f"{n},Documentary,"
    lines[120] = "120,Drama,2006\u20132007"
    return "\n".join(lines) + "\n"


def test_a_few_invalid_rows_are_skipped_and_reported(tmp_path: Path) -> None:
    done = run_import(tmp_path, poc_items())
    assert (done.rows, done.skipped) == (196, 4)
    assert done.summary == (
        "Imported 196 of 200 rows; skipped 4 invalid row(s) (2.00%): YEAR is empty but the field is "
        "required: 3; YEAR is not an int: 1. The first is row 7 (line 8 of part0.csv), column YEAR: is "
        "empty but the field is required.")
    ids = {r["ITEM_ID"] for r in imported_rows(tmp_path)}
    assert len(ids) == 196 and not ids & {"7", "50", "51", "120"}


def test_rows_with_the_wrong_number_of_fields_are_invalid_rows_too(tmp_path: Path) -> None:
    text = "ITEM_ID,GENRE,YEAR\n" + "".join(f"{n},A,2000\n" for n in range(20)) + "x,A\ny,A,2000,extra\n"
    done = run_import(tmp_path, text)
    assert (done.rows, done.skipped) == (20, 2)
    assert "the wrong number of fields: 2. The first is row 21 (line 22 of part0.csv): expected 3 fields, " \
           "found 2" in done.summary


def test_a_file_with_more_than_the_share_of_invalid_rows_fails_and_imports_nothing(tmp_path: Path) -> None:
    good = "".join(f"{n},A,2000\n" for n in range(100 - MAX_INVALID_PERCENT))
    at_limit = run_import(tmp_path, "ITEM_ID,GENRE,YEAR\n" + good + "b,A,\n" * MAX_INVALID_PERCENT)
    assert (at_limit.rows, at_limit.skipped) == (100 - MAX_INVALID_PERCENT, MAX_INVALID_PERCENT)
    with pytest.raises(ImportFailed) as failed:
        run_import(tmp_path, "ITEM_ID,GENRE,YEAR\n" + good + "b,A,\n" * (MAX_INVALID_PERCENT + 1))
    assert str(failed.value).startswith(f"{MAX_INVALID_PERCENT + 1} of 101 rows are invalid (10.9%), more "
                                        f"than the {MAX_INVALID_PERCENT}% an import may skip: ")
    assert len(imported_rows(tmp_path)) == 100 - MAX_INVALID_PERCENT  # the earlier import, untouched


def test_a_mostly_bad_file_fails_naming_the_first_bad_row_and_the_counts(tmp_path: Path) -> None:
    text = "ITEM_ID,GENRE,YEAR\n1,A,1999\n2,B,199x\n3,C,\n4,D,2001\n5,E\n6,F,x\n"
    with pytest.raises(ImportFailed) as failed:
        run_import(tmp_path, text)
    assert str(failed.value) == (
        "4 of 6 rows are invalid (66.7%), more than the 10% an import may skip: YEAR is not an int: 2; "
        "YEAR is empty but the field is required: 1; the wrong number of fields: 1. The first is row 2 "
        "(line 3 of part0.csv), column YEAR: '199x' is not an int. Nothing was imported.")


def test_the_first_invalid_row_is_the_first_in_file_order_across_files(tmp_path: Path) -> None:
    first = "ITEM_ID,GENRE,YEAR\n" + "".join(f"a{n},A,2000\n" for n in range(30)) + "late,A,x\n"
    second = "ITEM_ID,GENRE,YEAR\nb1,A,\n" + "".join(f"b{n},A,2000\n" for n in range(2, 30))
    done = run_import(tmp_path, first, second)
    assert done.skipped == 2 and "The first is row 31 (line 32 of part0.csv)" in done.summary


def test_a_pandas_index_column_and_lower_case_names_import(tmp_path: Path) -> None:
    text = ",item_id,genre,year,creation_timestamp\n0,i1,A,1999,1700000000\n1,i2,B,2000,\n"
    done = run_import(tmp_path, text)
    assert (done.rows, done.skipped, done.summary) == (2, 0, "Imported 2 rows.")
    assert imported_rows(tmp_path) == [
        {"ITEM_ID": "i1", "GENRE": "A", "YEAR": 1999, "CREATION_TIMESTAMP": 1700000000},
        {"ITEM_ID": "i2", "GENRE": "B", "YEAR": 2000, "CREATION_TIMESTAMP": None}]


# ---- schemas AWS's samples write ----

def test_a_union_of_one_type_is_that_type() -> None:
    text = json.dumps({"type": "record", "name": "Items", "fields": [
        {"name": "ITEM_ID", "type": ["string"]},
        {"name": "CATEGORY_L1", "type": ["string"], "categorical": True},
        {"name": "PRICE", "type": ["float"]}, {"name": "CREATION_TIMESTAMP", "type": ["long"]}]})
    schema = parse_schema(text)
    check_dataset_type(schema, "ITEMS")
    assert [(c.name, c.type, c.nullable, c.categorical) for c in schema.columns] == [
        ("ITEM_ID", "string", False, False), ("CATEGORY_L1", "string", False, True),
        ("PRICE", "float", False, False), ("CREATION_TIMESTAMP", "long", False, False)]


@pytest.mark.parametrize("type_", [["null"], ["bytes"], [{"type": "array", "items": "string"}], []])
def test_a_union_of_one_unsupported_type_is_refused(type_: Any) -> None:
    with pytest.raises(SchemaError, match='field "X"'):
        parse_schema(json.dumps({"type": "record", "name": "R", "fields": [{"name": "X", "type": type_}]}))


def test_an_inferred_schema_reads_the_header_as_an_import_does() -> None:
    text = infer_schema("ITEMS", ["", "item_id", "genre", "creation_timestamp"],
                        [["0", "i1", "A", "1700000000"], ["1", "i2", "B", "1700000001"]])
    fields = {f["name"]: f["type"] for f in json.loads(text)["fields"]}
    assert fields == {"ITEM_ID": "string", "genre": ["null", "string"],
                      "CREATION_TIMESTAMP": ["null", "long"]}
