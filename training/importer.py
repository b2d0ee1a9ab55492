"""Bulk CSV import (CreateDatasetImportJob) and export (CreateDatasetExportJob).

A job reads every CSV of its location as strings with pyarrow's streaming reader, checks
each column against the dataset's schema with vectorised compute kernels, converts it to
the schema's type and writes one Parquet part. All or nothing: one bad record fails the
whole job (its failureReason names the first bad row and column and counts the bad rows)
and nothing is committed. The header names schema fields, in any order; pipe-separated
values of categorical fields stay as they are (training splits them).
"""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from stream.archive import read_events
from stream.contract import MAX_EPOCH_SECONDS
from stream.dataset_schema import Column, Schema
from stream.datasets import DatasetStore, interactions_from_events
from stream.locations import LocationRefused, Locations, S3Location, confined
from stream.settings import Settings
from training.s3_files import S3Error, S3Files

Progress = Callable[..., None]  # progress(rowsDone=n): the job runner publishes it
MAX_ID_LENGTH = 256
ARROW_TYPES = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
               "double": pa.float64(), "boolean": pa.bool_()}
PATTERNS = {"int": r"^\s*[+-]?\d{1,10}\s*$", "long": r"^\s*[+-]?\d{1,19}\s*$",
            "float": r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$",
            "boolean": r"^(?i)(true|false|1|0)$"}
PATTERNS["double"] = PATTERNS["float"]
HEADER_BYTES = 1 << 16


class ImportFailed(ValueError):
    """The job's failureReason: what a user needs to fix the data."""


def csv_files(location: str, roots: Sequence[Path]) -> list[Path]:
    """The CSV files of `location` (a file, or every .csv of a folder), each within `roots`."""
    try:
        path = confined(location, roots)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
            if not files:
                raise ImportFailed(f"dataLocation {location!r} is a folder without .csv files")
            return [confined(f, roots) for f in files]
    except LocationRefused as exc:
        raise ImportFailed(f"dataLocation {exc}") from None
    if not path.is_file():
        raise ImportFailed(f"dataLocation {location!r} does not exist")
    return [path]


def read_header(path: Path, schema: Schema) -> list[str]:
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if not head.strip():
        raise ImportFailed(f"{path.name} is empty: expected a header line with "
                           f"{', '.join(schema.names)}")
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        header = next(csv.reader(io.StringIO(line.decode("utf-8-sig"))))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        raise ImportFailed(f"{path.name}: the first line is not a UTF-8 CSV header") from None
    unknown = [c for c in header if schema.column(c) is None]
    if unknown:
        raise ImportFailed(f"{path.name}: header column {unknown[0][:100]!r} is not a field of the "
                           f"schema ({', '.join(schema.names)})")
    missing = [c.name for c in schema.columns if not c.nullable and c.name not in header]
    if missing:
        raise ImportFailed(f"{path.name}: header lacks required column(s) {', '.join(missing)}")
    if len(set(header)) != len(header):
        raise ImportFailed(f"{path.name}: header names a column twice")
    return header


@dataclass
class BadRows:
    count: int = 0
    skipped: int = 0  # rows with the wrong number of fields: not in the batches at all
    first: str | None = None  # "row R (line L of FILE), column C: why"
    first_row: int = 1 << 62

    def add(self, row: int, where: str, count: int = 1) -> None:
        self.count += count
        if row < self.first_row:
            self.first_row, self.first = row, where


def check_column(values: pa.Array, col: Column) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    """The values in the column's type, and (mask of bad cells, why they are bad) pairs."""
    problems: list[tuple[pa.Array, str]] = []
    if not col.nullable and values.null_count:
        problems.append((values.is_null(), "is empty but the field is required"))
    if col.type == "string":
        if col.name in ("USER_ID", "ITEM_ID"):
            too_long = pc.fill_null(pc.greater(pc.utf8_length(values), MAX_ID_LENGTH), False)
            problems.append((too_long, f"is longer than {MAX_ID_LENGTH} characters"))
        return values, problems
    wrong = pc.invert(pc.fill_null(pc.match_substring_regex(values, PATTERNS[col.type]), True))
    what = f"is not {'an' if col.type == 'int' else 'a'} {col.type}"
    timestamp = col.name in ("TIMESTAMP", "CREATION_TIMESTAMP")
    problems.append((wrong, what + (" (Unix epoch seconds)" if timestamp else "")))
    clean = pc.if_else(wrong, pa.scalar(None, pa.string()), values)
    out = pc.cast(pc.utf8_lower(clean) if col.type == "boolean" else pc.utf8_trim_whitespace(clean),
                  ARROW_TYPES[col.type])
    if timestamp:
        # before 1970 is fine (release dates); 13 digits is milliseconds
        out_of_range = pc.fill_null(pc.greater_equal(pc.abs(out), MAX_EPOCH_SECONDS), False)
        problems.append((out_of_range, "is not Unix epoch seconds (milliseconds?)"))
    return out, problems


def convert_batch(batch: pa.RecordBatch, header: list[str], schema: Schema, first_row: int,
                  file: str, bad: BadRows, order: int = 0) -> pa.RecordBatch | None:
    """The batch in the schema's column order and types, or None when it has bad cells
    (counted in `bad`: the job fails, so only the count and the first one matter)."""
    arrays, any_bad = [], None
    for col in schema.columns:
        if col.name not in header:
            arrays.append(pa.nulls(batch.num_rows, ARROW_TYPES[col.type]))
            continue
        values = batch.column(header.index(col.name))
        out, problems = check_column(values, col)
        for mask, why in problems:
            if not pc.any(mask).as_py():
                continue
            i = pc.index(mask, True).as_py()
            shown = values[i].as_py()
            row = first_row + i
            bad.add(order + row, f"row {row} (line {row + 1} of {file}), column {col.name}: "
                    f"{'' if shown is None else repr(shown[:100]) + ' '}{why}", 0)
            any_bad = mask if any_bad is None else pc.or_(any_bad, mask)
        arrays.append(out)
    if any_bad is not None:
        bad.count += pc.sum(any_bad.cast(pa.int64())).as_py()
        return None
    return pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(schema))


def arrow_schema(schema: Schema) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in schema.columns])


def import_csv(store: DatasetStore, files: list[Path], *, job_id: str, location: str,
               dataset_group: str, dataset_type: str, schema: Schema, replace: bool,
               progress: Progress) -> int:
    """Check and convert every file, then commit them as one new part; returns rows imported."""
    headers = [read_header(f, schema) for f in files]  # fail fast, before reading any rows
    part = store.new_part(dataset_group, dataset_type)
    bad, rows = BadRows(), 0
    try:
        with pq.ParquetWriter(part, arrow_schema(schema), compression="zstd") as out:
            for path, header in zip(files, headers, strict=True):
                rows = _import_file(path, header, schema, out, bad, rows, progress)
        if bad.count:
            raise ImportFailed(f"{bad.count} bad row(s) of {rows + bad.skipped}; the first is {bad.first}. "
                               "Nothing was imported.")
        if rows == 0:
            raise ImportFailed(f"dataLocation {location!r} has a header but no rows")
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    store.commit(dataset_group, dataset_type, job_id, part, rows, replace=replace)
    return rows


def _import_file(path: Path, header: list[str], schema: Schema, out: pq.ParquetWriter,
                 bad: BadRows, rows: int, progress: Progress) -> int:
    file_rows = 0

    def wrong_width(row: pcsv.InvalidRow) -> str:
        line = row.number  # known because the reader runs single-threaded
        bad.skipped += 1
        bad.add(rows + line - 1, f"row {line - 1} (line {line} of {path.name}): expected "
                f"{row.expected_columns} fields, found {row.actual_columns}")
        return "skip"

    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=1, block_size=8 << 20,
                                          use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=wrong_width, newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in header}, null_values=[""],
                strings_can_be_null=True, quoted_strings_can_be_null=False))
        for batch in reader:
            converted = convert_batch(batch, header, schema, file_rows + 1, path.name, bad, rows)
            if converted is not None and not bad.count:
                out.write_batch(converted)
            file_rows += batch.num_rows
            progress(rowsDone=rows + file_rows)
    except pa.ArrowInvalid as exc:
        raise ImportFailed(f"{path.name} after row {file_rows}: {exc}") from None
    return rows + file_rows


EXPORT_FILE = "part-00000.csv"


def export_csv(table: pa.Table, destination: str, job_name: str, roots: Sequence[Path]) -> int:
    """Write `table` as CSV to `<destination>/<jobName>/part-00000.csv` (a folder that a
    later import job can read back as it is); returns rows written."""
    try:
        folder = confined(confined(destination, roots) / job_name, roots)
        folder.mkdir(parents=True, exist_ok=True)
        folder = confined(folder, roots)  # a symlink made under the root meanwhile
    except LocationRefused as exc:
        raise ImportFailed(f"path {exc}") from None
    tmp = folder / f".{EXPORT_FILE}.tmp"
    tmp.unlink(missing_ok=True)  # never write through a link left in its place
    write_csv(table, tmp)
    tmp.replace(folder / EXPORT_FILE)
    return table.num_rows


def write_csv(table: pa.Table, path: Path) -> None:
    pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="needed"))


class DatasetFiles:
    """The dataset jobs the control plane runs (it gets this from the composition root):
    imports into, exports from and deletion of `<data dir>/datasets`."""

    def __init__(self, data_dir: Path, locations: Locations, s3_endpoint_url: str | None = None) -> None:
        self.store = DatasetStore(data_dir / "datasets")
        self.archive = data_dir / "archive"  # PutEvents records, written by the archive agent
        self.spool = data_dir / "spool"  # S3 objects a job is reading or writing, while it runs
        self.locations = locations  # where jobs may read and write (stream.locations)
        self.s3 = S3Files(s3_endpoint_url)

    @classmethod
    def of(cls, settings: Settings) -> DatasetFiles:
        return cls(settings.data_dir, settings.locations, settings.s3_endpoint_url)

    def import_csv(self, *, location: str, **job: Any) -> int:
        with self._readable(location) as files:
            return import_csv(self.store, files, location=location, **job)

    @contextmanager
    def _readable(self, location: str) -> Iterator[list[Path]]:
        """The location's CSV files on this disk: its own, or downloaded ones for the job's span."""
        try:
            where = self.locations.check(location)
        except LocationRefused as exc:
            raise ImportFailed(f"dataLocation {exc}") from None
        if not isinstance(where, S3Location):
            yield csv_files(location, self.locations.roots)
            return
        with self._spooled() as folder:
            try:
                files = self.s3.download(where, folder)
            except S3Error as exc:
                raise ImportFailed(f"dataLocation {exc}") from None
            yield files

    @contextmanager
    def _spooled(self) -> Iterator[Path]:
        self.spool.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=self.spool))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _write(self, table: pa.Table, destination: str, job_name: str) -> int:
        try:
            where = self.locations.check(destination)
        except LocationRefused as exc:
            raise ImportFailed(f"path {exc}") from None
        if not isinstance(where, S3Location):
            return export_csv(table, destination, job_name, self.locations.roots)
        with self._spooled() as folder:
            write_csv(table, folder / EXPORT_FILE)
            try:
                self.s3.upload(folder / EXPORT_FILE, where.child(job_name).child(EXPORT_FILE))
            except S3Error as exc:
                raise ImportFailed(f"path {exc}") from None
        return table.num_rows

    def export_csv(self, *, job_name: str, destination: str, dataset_group: str, dataset_type: str,
                   schema: Schema, ingestion_mode: str, progress: Progress) -> int:
        """BULK: imported rows; PUT: rows that came through PutEvents; ALL: both."""
        tables = [self.store.read(dataset_group, dataset_type, ingestion_mode)]
        if ingestion_mode in ("PUT", "ALL") and dataset_type == "INTERACTIONS":
            tables.append(interactions_from_events(read_events(self.archive, dataset_group)))
        empty = arrow_schema(schema).empty_table()
        table = pa.concat_tables([empty] + [t.select([c for c in schema.names if c in t.column_names])
                                            for t in tables], promote_options="permissive")
        rows = self._write(table, destination, job_name)
        progress(rowsDone=rows)
        return rows

    def drop(self, dataset_group: str, dataset_type: str) -> None:
        self.store.drop(dataset_group, dataset_type)
