"""The per-column checks of a CSV import (training.importer), on in-memory Arrow arrays."""
from __future__ import annotations

import pyarrow as pa

from stream.dataset_schema import Column, parse_schema
from training.importer import BadRows, check_column, convert_batch


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


def test_a_batch_with_bad_cells_is_counted_once_per_row_and_not_converted() -> None:
    schema = parse_schema('{"type": "record", "name": "R", "fields": [{"name": "USER_ID", "type": "string"},'
                          '{"name": "ITEM_ID", "type": "string"}, {"name": "TIMESTAMP", "type": "long"}]}')
    batch = pa.record_batch([pa.array(["1", "2", "x"]), pa.array(["u", None, None]),
                             pa.array(["i", "j", "k"])], names=["TIMESTAMP", "USER_ID", "ITEM_ID"])
    bad = BadRows()
    assert convert_batch(batch, ["TIMESTAMP", "USER_ID", "ITEM_ID"], schema, 1, "f.csv", bad) is None
    assert bad.count == 2  # row 2 has one bad cell, row 3 two
    assert bad.first == "row 2 (line 3 of f.csv), column USER_ID: is empty but the field is required"
    good = BadRows()
    out = convert_batch(batch.slice(0, 1), ["TIMESTAMP", "USER_ID", "ITEM_ID"], schema, 1, "f.csv", good)
    assert good.count == 0 and out.schema.names == ["USER_ID", "ITEM_ID", "TIMESTAMP"]
    assert out.to_pylist() == [{"USER_ID": "u", "ITEM_ID": "i", "TIMESTAMP": 1}]
