"""Bulk CSV import (CreateDatasetImportJob) and export (CreateDatasetExportJob).

A job reads every CSV of its location as strings with pyarrow's streaming reader, checks
each column against the dataset's schema with vectorised compute kernels, converts it to
the schema's type and writes one Parquet part. Invalid rows (a bad value, an empty required
field, the wrong number of fields) are skipped and reported, since Personalize imports files
with a few of them (AWS's own samples have some); a job with more than MAX_INVALID_PERCENT of
its rows invalid fails and commits nothing (its failureReason names the first bad row and
column and counts the invalid rows by reason). A header that does not fit the schema fails
the job. Header names match schema fields in any
order and any case; a column with an empty name (pandas' index) is ignored. Pipe-separated
values of categorical fields stay as they are (training splits them).
"""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from kernel.archive import ArchiveFiles, Erased
from kernel.archive_parts import ArchiveReader, archive_of
from kernel.contract import MAX_EPOCH_SECONDS
from kernel.dataset_schema import Column, Schema, parse_schema
from kernel.datasets import DatasetStore, interactions_from_events
from kernel.locations import LocationRefused, Locations, S3Location, confined
from kernel.s3_files import S3Error, S3Files
from kernel.settings import Settings

Progress = Callable[..., None]  # progress(rowsDone=n): the job runner publishes it
MAX_ID_LENGTH = 256
ARROW_TYPES = {"string": pa.string(), "int": pa.int32(), "long": pa.int64(), "float": pa.float32(),
               "double": pa.float64(), "boolean": pa.bool_()}
PATTERNS = {"int": r"^\s*[+-]?\d{1,10}\s*$", "long": r"^\s*[+-]?\d{1,19}\s*$",
            "float": r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$",
            "boolean": r"^(?i)(true|false|1|0)$"}
PATTERNS["double"] = PATTERNS["float"]
INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
HEADER_BYTES = 1 << 16
# Personalize imports files with a few invalid rows but documents no share past which it fails
# a job, so this one is ours
MAX_INVALID_PERCENT = 10
MAX_REASONS = 5  # kinds of invalid rows a summary lists, the commonest first
MAX_DELETION_BYTES = 100 * 2**20  # Personalize's limit on a data deletion job's input files
DELETION_SCHEMA = parse_schema('{"type": "record", "name": "Users", "fields": [{"name": "USER_ID", '
                               '"type": "string"}], "version": "1.0"}')


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
    """The schema field each column of `path` holds, "" for a column to ignore. Names match
    ignoring case (AWS's sample items file says creation_timestamp); an empty name is pandas'
    index column (`df.to_csv(path)`), which Personalize ignores too."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if not head.strip():
        raise ImportFailed(f"{path.name} is empty: expected a header line with "
                           f"{', '.join(schema.names)}")
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        names = next(csv.reader(io.StringIO(line.decode("utf-8-sig"))))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        raise ImportFailed(f"{path.name}: the first line is not a UTF-8 CSV header") from None
    fields = {c.name.lower(): c.name for c in schema.columns}
    unknown = [n for n in names if n.strip() and n.lower() not in fields]
    if unknown:
        raise ImportFailed(f"{path.name}: header column {unknown[0][:100]!r} is not a field of the "
                           f"schema ({', '.join(schema.names)})")
    header = [fields[n.lower()] if n.strip() else "" for n in names]
    named = [n for n in header if n]
    missing = [c.name for c in schema.columns if not c.nullable and c.name not in named]
    if missing:
        raise ImportFailed(f"{path.name}: header lacks required column(s) {', '.join(missing)}")
    if len(set(named)) != len(named):
        raise ImportFailed(f"{path.name}: header names a column twice")
    return header


def column_names(header: list[str]) -> list[str]:
    """Names for the CSV reader: the header's, with a distinct one for each column it ignores."""
    return [name or f"\0ignored{i}" for i, name in enumerate(header)]


@dataclass
class BadRows:
    """An import's invalid rows: how many, how many for each reason, and the first one."""
    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first: str | None = None  # "row R (line L of FILE), column C: why"
    first_row: int = 1 << 62

    def add(self, row: int, where: str, reason: str, count: int = 1) -> None:
        """`count` rows invalid for `reason`, the earliest at `row` (ordered across files). The
        caller counts the rows themselves: one row can be invalid for several reasons."""
        self.reasons[reason] += count
        if row < self.first_row:
            self.first_row, self.first = row, where

    def summary(self) -> str:
        """The reasons, commonest first, and the first invalid row: enough to find and fix them."""
        commonest = sorted(self.reasons.items(), key=lambda reason: (-reason[1], reason[0]))
        reasons = "; ".join(f"{why}: {n:,}" for why, n in commonest[:MAX_REASONS])
        more = "; ..." if len(self.reasons) > MAX_REASONS else ""
        return f"{reasons}{more}. The first is {self.first}"


@dataclass(frozen=True)
class Imported:
    """What an import job reports: rows imported, invalid rows skipped, and a sentence for people."""
    rows: int
    skipped: int
    summary: str


def check_column(values: pa.Array, col: Column) -> tuple[pa.Array, list[tuple[pa.Array, str]]]:
    """The values in the column's type, and (mask of bad cells, why they are bad) pairs."""
    problems: list[tuple[pa.Array, str]] = []
    if not col.nullable and values.null_count:
        problems.append((values.is_null(), "is empty but the field is required"))
    if col.type == "string":
        if col.name in ("USER_ID", "ITEM_ID", "ACTION_ID"):
            too_long = pc.fill_null(pc.greater(pc.utf8_length(values), MAX_ID_LENGTH), False)
            problems.append((too_long, f"is longer than {MAX_ID_LENGTH} characters"))
        return values, problems
    wrong = pc.invert(pc.fill_null(pc.match_substring_regex(values, PATTERNS[col.type]), True))
    what = f"is not {'an' if col.type == 'int' else 'a'} {col.type}"
    timestamp = col.name in ("TIMESTAMP", "CREATION_TIMESTAMP")
    clean = pc.if_else(wrong, pa.scalar(None, pa.string()), values)
    if col.type in INT_RANGES:
        # the pattern passes a leading "+" and digits past the type's range, which Arrow's integer
        # cast refuses for the whole column: read them as decimals, so each is one invalid row
        number = pc.cast(pc.utf8_trim_whitespace(clean), pa.decimal128(20, 0))
        low, high = (pa.scalar(bound, number.type) for bound in INT_RANGES[col.type])
        outside = pc.fill_null(pc.or_(pc.less(number, low), pc.greater(number, high)), False)
        wrong = pc.or_(wrong, outside)
        out = pc.cast(pc.if_else(outside, pa.scalar(None, number.type), number), ARROW_TYPES[col.type])
    else:
        out = pc.cast(pc.utf8_lower(clean) if col.type == "boolean" else pc.utf8_trim_whitespace(clean),
                      ARROW_TYPES[col.type])
    problems.append((wrong, what + (" (Unix epoch seconds)" if timestamp else "")))
    if timestamp:
        # before 1970 is fine (release dates); 13 digits is milliseconds (no abs(): it wraps at -2**63)
        out_of_range = pc.fill_null(pc.or_(pc.greater_equal(out, MAX_EPOCH_SECONDS),
                                           pc.less_equal(out, -MAX_EPOCH_SECONDS)), False)
        problems.append((out_of_range, "is not Unix epoch seconds (milliseconds?)"))
    return out, problems


def convert_batch(batch: pa.RecordBatch, schema: Schema, first_row: int, file: str, bad: BadRows,
                  order: int = 0) -> pa.RecordBatch:
    """The batch's valid rows in the schema's column order and types. Its invalid rows are
    left out and counted in `bad`, by reason (a row with two bad cells counts under both)."""
    arrays, invalid = [], None
    for col in schema.columns:
        if col.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, ARROW_TYPES[col.type]))
            continue
        values = batch.column(col.name)
        out, problems = check_column(values, col)
        for mask, why in problems:
            hits = pc.sum(mask.cast(pa.int64())).as_py() or 0
            if not hits:
                continue
            i = pc.index(mask, True).as_py()
            shown = values[i].as_py()
            row = first_row + i
            bad.add(order + row, f"row {row} (line {row + 1} of {file}), column {col.name}: "
                    f"{'' if shown is None else repr(shown[:100]) + ' '}{why}", f"{col.name} {why}", hits)
            invalid = mask if invalid is None else pc.or_(invalid, mask)
        arrays.append(out)
    converted = pa.RecordBatch.from_arrays(arrays, schema=arrow_schema(schema))
    if invalid is None:
        return converted
    bad.count += pc.sum(invalid.cast(pa.int64())).as_py()
    return converted.filter(pc.invert(invalid))


def arrow_schema(schema: Schema) -> pa.Schema:
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type], nullable=c.nullable) for c in schema.columns])


def import_csv(store: DatasetStore, files: list[Path], *, job_id: str, location: str,
               dataset_group: str, dataset_type: str, schema: Schema, replace: bool,
               progress: Progress) -> Imported:
    """Check and convert every file, then commit their valid rows as one new part, unless
    more than MAX_INVALID_PERCENT of the rows are invalid."""
    headers = [read_header(f, schema) for f in files]  # fail fast, before reading any rows
    part = store.new_part(dataset_group, dataset_type)
    bad, total = BadRows(), 0
    try:
        with pq.ParquetWriter(part, arrow_schema(schema), compression="zstd") as out:
            for path, header in zip(files, headers, strict=True):
                total = _import_file(path, header, schema, out, bad, total, progress)
        if total == 0:
            raise ImportFailed(f"dataLocation {location!r} has a header but no rows")
        check_invalid_share(bad, total)
    except BaseException:
        store.discard(part)
        raise
    rows = total - bad.count
    store.commit(dataset_group, dataset_type, job_id, part, rows, replace=replace)
    return Imported(rows, bad.count, import_summary(bad, total))


def check_invalid_share(bad: BadRows, total: int) -> None:
    """Fail the job when too many of its `total` rows are invalid: that many means a wrong schema
    or a broken file, not a few stray values, and importing the rest would quietly train on a
    fraction of the data."""
    if bad.count * 100 <= MAX_INVALID_PERCENT * total:
        return
    raise ImportFailed(f"{bad.count:,} of {total:,} rows are invalid ({bad.count / total:.1%}), more "
                       f"than the {MAX_INVALID_PERCENT}% an import may skip: {bad.summary()}. "
                       "Nothing was imported.")


def import_summary(bad: BadRows, total: int) -> str:
    """A sentence for the job's description: what was imported and what was skipped, and why."""
    if not bad.count:
        return f"Imported {total:,} rows."
    return (f"Imported {total - bad.count:,} of {total:,} rows; skipped {bad.count:,} invalid row(s) "
            f"({bad.count / total:.2%}): {bad.summary()}.")


def _import_file(path: Path, header: list[str], schema: Schema, out: pq.ParquetWriter,
                 bad: BadRows, rows: int, progress: Progress) -> int:
    """Write the file's valid rows to `out`; returns the rows read so far, these included."""
    file_rows = skipped = 0  # rows in batches; rows the reader skipped for their width

    def wrong_width(row: pcsv.InvalidRow) -> str:
        nonlocal skipped
        line = row.number  # known because the reader runs single-threaded
        skipped += 1
        bad.count += 1
        bad.add(rows + line - 1, f"row {line - 1} (line {line} of {path.name}): expected "
                f"{row.expected_columns} fields, found {row.actual_columns}", "the wrong number of fields")
        return "skip"

    names = column_names(header)
    wanted = [n for n in header if n]
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=8 << 20,
                                          use_threads=False),
            parse_options=pcsv.ParseOptions(invalid_row_handler=wrong_width, newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(
                include_columns=wanted, column_types={c: pa.string() for c in wanted}, null_values=[""],
                strings_can_be_null=True, quoted_strings_can_be_null=False))
        for batch in reader:
            # rows after skipped ones are numbered short by those; never the first invalid row, though
            converted = convert_batch(batch, schema, file_rows + 1, path.name, bad, rows)
            if converted.num_rows:
                out.write_batch(converted)
            file_rows += batch.num_rows
            progress(rowsDone=rows + file_rows + skipped)
    except pa.ArrowInvalid as exc:
        raise ImportFailed(f"{path.name} after row {file_rows + skipped}: {exc}") from None
    return rows + file_rows + skipped


def user_ids(files: list[Path]) -> list[str]:
    """The users a data deletion job's CSV files name (one USER_ID column), each once, in order.
    Checked as an import's rows are: a bad row fails the job and names the row."""
    size = sum(f.stat().st_size for f in files)
    if size > MAX_DELETION_BYTES:
        raise ImportFailed(f"dataLocation holds {size:,} bytes of CSV; a data deletion job takes at most "
                           f"{MAX_DELETION_BYTES:,}")
    users: dict[str, None] = {}
    bad = BadRows()
    for path in files:
        header = read_header(path, DELETION_SCHEMA)
        wanted = [n for n in header if n]
        try:
            reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(column_names=column_names(header),
                                                                       skip_rows=1),
                                   convert_options=pcsv.ConvertOptions(
                                       include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                       # "" too: no user has an empty id
                                       null_values=[""], strings_can_be_null=True))
            done = 0
            for batch in reader:
                converted = convert_batch(batch, DELETION_SCHEMA, done + 1, path.name, bad)
                users.update(dict.fromkeys(converted.column(0).to_pylist()))
                done += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise ImportFailed(f"{path.name}: {exc}") from None
        if bad.count:
            raise ImportFailed(f"{bad.count} bad row(s); the first is {bad.first}. Nothing was deleted.")
    if not users:
        raise ImportFailed("dataLocation has a header but no user ids")
    return list(users)


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

    def __init__(self, data_dir: Path, locations: Locations, s3_endpoint_url: str | None = None, *,
                 store: DatasetStore | None = None, archive: ArchiveReader | None = None) -> None:
        self.store = store or DatasetStore(data_dir / "datasets")
        self.archive = archive or ArchiveFiles(data_dir / "archive")  # PutEvents records
        self.spool = data_dir / "spool"  # S3 objects a job is reading or writing, while it runs
        self.locations = locations  # where jobs may read and write (kernel.locations)
        self.s3 = S3Files(s3_endpoint_url)

    @classmethod
    def of(cls, settings: Settings) -> DatasetFiles:
        return cls(settings.data_dir, settings.locations, settings.s3_endpoint_url,
                   store=DatasetStore.of(settings), archive=archive_of(settings))

    def import_csv(self, *, location: str, **job: Any) -> Imported:
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
            tables.append(interactions_from_events(self.archive.read(dataset_group)))
        empty = arrow_schema(schema).empty_table()
        table = pa.concat_tables([empty] + [t.select([c for c in schema.names if c in t.column_names])
                                            for t in tables], promote_options="permissive")
        rows = self._write(table, destination, job_name)
        progress(rowsDone=rows)
        return rows

    def drop(self, dataset_group: str, dataset_type: str) -> None:
        """A dataset's rows; for INTERACTIONS, the events PutEvents archived too (they are its PUT part)."""
        self.store.drop(dataset_group, dataset_type)
        if dataset_type == "INTERACTIONS":
            self.archive.erase(dataset_group)

    def drop_group(self, dataset_group: str) -> None:
        """Whatever a dataset group's datasets and archive still hold."""
        self.store.drop_group(dataset_group)
        self.archive.drop(dataset_group)

    def user_ids(self, location: str) -> list[str]:
        with self._readable(location) as files:
            return user_ids(files)

    def erase_users(self, dataset_group: str, users: list[str]) -> Erased:
        """The users' rows in the INTERACTIONS, USERS and ACTION_INTERACTIONS datasets, and their
        archived events: the users found, and the sessions their events came in (their anonymous
        session states)."""
        found = set()
        for dataset_type in ("INTERACTIONS", "USERS", "ACTION_INTERACTIONS"):
            found |= self.store.erase(dataset_group, dataset_type, "USER_ID", users)
        archived = self.archive.erase(dataset_group, users)
        return Erased(found | archived.users, archived.sessions)
