"""Dataset rows on disk: Parquet part files per dataset, committed through a manifest.

`<data dir>/datasets/<dataset group>/<TYPE>/` holds `part-*.parquet` files (one per
import job: bulk data) and `put-*.parquet` files (PutItems/PutUsers records, written by
the dataset writer), and `manifest.json`, the list of parts a reader sees. A writer adds
its file first and then replaces the manifest in one `os.replace`, so a crash leaves
either the old dataset or the new one, never half. FULL imports replace the bulk parts
(records put individually stay, as in Personalize); INCREMENTAL ones add a part.
Items and users are upserted by id: of the rows of one id, the newest write wins (a bulk
row is as new as its import's commit, a put row as its record).
"""
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream.contract import DatasetRecord, Event

DATASETS_GROUP = "opz-datasets"  # consumer group that writes PutItems/PutUsers into the datasets
ID_COLUMN = {"ITEMS": "ITEM_ID", "USERS": "USER_ID"}  # upsert keys; interactions only append
AT = "__written_at"  # per-row write time of put parts
MAX_PUT_PARTS = 16  # more are merged into one, so a stream of small writes stays cheap to read
ORPHAN_AGE_S = 600  # a part file no manifest lists, this old, was left by a crashed writer


@dataclass
class Part:
    name: str
    rows: int
    at: float  # commit time


@dataclass
class Manifest:
    parts: list[Part] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # committed import jobs: a re-run commits nothing

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """One manifest writer at a time, across processes (an import in the API process, puts
    in a stream worker) and threads alike: flock holds per open file."""
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class DatasetStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, dataset_group: str, dataset_type: str) -> Path:
        return self.root / dataset_group / dataset_type

    def manifest(self, dataset_group: str, dataset_type: str) -> Manifest:
        f = self.path(dataset_group, dataset_type) / "manifest.json"
        if not f.exists():
            return Manifest()
        doc = orjson.loads(f.read_bytes())
        return Manifest([Part(**p) for p in doc["parts"]], doc["jobs"])

    def new_part(self, dataset_group: str, dataset_type: str, prefix: str = "part") -> Path:
        """A fresh part file name; it is invisible to readers until a commit lists it."""
        d = self.path(dataset_group, dataset_type)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{prefix}-{uuid.uuid4().hex}.parquet"

    def _write_manifest(self, d: Path, manifest: Manifest, old: Manifest) -> None:
        tmp = d / f".manifest-{uuid.uuid4().hex}.json"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(asdict(manifest)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / "manifest.json")
        listed = {p.name for p in manifest.parts}
        for gone in {p.name for p in old.parts} - listed:
            (d / gone).unlink(missing_ok=True)
        for f in d.glob("*.parquet"):  # parts of writers that crashed before their commit
            with contextlib.suppress(FileNotFoundError):
                if f.name not in listed and time.time() - f.stat().st_mtime > ORPHAN_AGE_S:
                    f.unlink()

    def commit(self, dataset_group: str, dataset_type: str, job_id: str, part: Path, rows: int, *,
               replace: bool) -> bool:
        """Make an import's part visible (after the others, or instead of the bulk ones).
        False if that job had committed already."""
        d = self.path(dataset_group, dataset_type)
        with _locked(d):
            old = self.manifest(dataset_group, dataset_type)
            if job_id in old.jobs:
                return False
            kept = [p for p in old.parts if p.name.startswith("put-")] if replace else old.parts
            new = Manifest([*kept, Part(part.name, rows, time.time())], [*old.jobs, job_id])
            self._write_manifest(d, new, old)
        return True

    async def put_async(self, records: Sequence[DatasetRecord]) -> int:
        return await asyncio.to_thread(self.put, records)

    def put(self, records: Sequence[DatasetRecord]) -> int:
        """Upsert PutItems/PutUsers records (at-least-once delivery is fine: same id, same
        values); returns how many were written."""
        by_dataset: dict[tuple[str, str], list[DatasetRecord]] = {}
        for r in records:
            by_dataset.setdefault((r.dataset_group, r.dataset_type), []).append(r)
        for (group, kind), recs in by_dataset.items():
            columns = list(dict.fromkeys(f for r in recs for f in r.fields))  # from_pylist reads
            table = pa.table({ID_COLUMN[kind]: [r.id for r in recs],      # only the first row's keys
                              **{c: [r.fields.get(c) for r in recs] for c in columns},
                              AT: pa.array([r.received_at for r in recs], pa.float64())})
            part = self.new_part(group, kind, "put")
            pq.write_table(table, part)
            with _locked(part.parent):
                old = self.manifest(group, kind)
                new = Manifest([*old.parts, Part(part.name, len(recs), time.time())], old.jobs)
                self._write_manifest(part.parent, new, old)
            if sum(p.name.startswith("put-") for p in new.parts) > MAX_PUT_PARTS:
                self._merge_puts(group, kind)
        return len(records)

    def _merge_puts(self, dataset_group: str, dataset_type: str) -> None:
        d = self.path(dataset_group, dataset_type)
        with _locked(d):
            old = self.manifest(dataset_group, dataset_type)
            puts = [p for p in old.parts if p.name.startswith("put-")]
            table = newest(_concat([pq.read_table(d / p.name) for p in puts]), ID_COLUMN[dataset_type])
            part = self.new_part(dataset_group, dataset_type, "put")
            pq.write_table(table, part)
            merged = Part(part.name, table.num_rows, max(p.at for p in puts))
            bulk = [p for p in old.parts if not p.name.startswith("put-")]
            self._write_manifest(d, Manifest([*bulk, merged], old.jobs), old)

    def read(self, dataset_group: str, dataset_type: str, source: str = "ALL") -> pa.Table:
        """The dataset as one table; for items and users, the newest row per id. `source`
        is an export job's ingestionMode: BULK (imports), PUT (PutItems/PutUsers) or ALL."""
        d = self.path(dataset_group, dataset_type)
        tables = []
        for p in self.manifest(dataset_group, dataset_type).parts:
            if source != "ALL" and p.name.startswith("put-") != (source == "PUT"):
                continue
            t = pq.read_table(d / p.name)
            if AT not in t.column_names:
                t = t.append_column(AT, pa.array([p.at] * t.num_rows, pa.float64()))
            tables.append(t)
        if not tables:
            return pa.table({})
        table = _concat(tables)
        key = ID_COLUMN.get(dataset_type)
        return (newest(table, key) if key else table).drop_columns([AT])

    def drop(self, dataset_group: str, dataset_type: str) -> None:
        shutil.rmtree(self.path(dataset_group, dataset_type), ignore_errors=True)

    def drop_group(self, dataset_group: str) -> None:
        shutil.rmtree(self.root / dataset_group, ignore_errors=True)

    def erase(self, dataset_group: str, dataset_type: str, column: str, values: Collection[str]) -> set[str]:
        """Rewrite each part holding rows whose `column` is one of `values` without those rows,
        and commit the rewritten parts in their places (same kind, same time: an upsert's
        newest row stays the newest); returns the values found."""
        d = self.path(dataset_group, dataset_type)
        if not (d / "manifest.json").exists() or not values:
            return set()
        wanted = pa.array(list(values), pa.string())
        found: set[str] = set()
        with _locked(d):
            old = self.manifest(dataset_group, dataset_type)
            parts = []
            for p in old.parts:
                table = pq.read_table(d / p.name)
                hit = pc.fill_null(pc.is_in(table[column], value_set=wanted), False) \
                    if column in table.column_names else None
                if hit is None or not pc.any(hit).as_py():
                    parts.append(p)
                    continue
                found.update(pc.unique(table.filter(hit)[column]).to_pylist())
                kept = table.filter(pc.invert(hit))
                if kept.num_rows:
                    part = self.new_part(dataset_group, dataset_type, p.name.split("-", 1)[0])
                    pq.write_table(kept, part, compression="zstd")
                    parts.append(Part(part.name, kept.num_rows, p.at))
            if found:
                self._write_manifest(d, Manifest(parts, old.jobs), old)
        return found


def _concat(tables: list[pa.Table]) -> pa.Table:
    # parts written before an UpdateDataset lack the new columns: promote to the union
    return pa.concat_tables(tables, promote_options="permissive")


def newest(table: pa.Table, key: str) -> pa.Table:
    """The last-written row of each id (ties: the later row), in first-seen order."""
    table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    order = pc.sort_indices(table, [(AT, "ascending"), ("__row", "ascending")])
    ranked = table.take(order).append_column("__rank", pa.array(range(table.num_rows), pa.int64()))
    last = ranked.group_by(key, use_threads=False).aggregate([("__rank", "max")])["__rank_max"]
    picked = ranked.take(last)
    return picked.take(pc.sort_indices(picked["__row"])).drop_columns(["__row", "__rank"])


def interactions_from_events(events: Sequence[Event]) -> pa.Table:
    """PutEvents records as INTERACTIONS rows. An anonymous event belongs to the user who later
    used its sessionId signed in (stitching, as Personalize does), else to the sessionId."""
    signed_in = {e.session_id: e.user_id for e in events if e.user_id is not None}
    return pa.table({
        "USER_ID": pa.array([e.user_id or signed_in.get(e.session_id, e.session_id) for e in events],
                            pa.string()),
        "ITEM_ID": pa.array([e.item_id for e in events], pa.string()),
        "TIMESTAMP": pa.array([int(e.sent_at) for e in events], pa.int64()),
        "EVENT_TYPE": pa.array([e.event_type for e in events], pa.string()),
        "EVENT_VALUE": pa.array([e.event_value for e in events], pa.float32()),
        "IMPRESSION": pa.array(["|".join(e.impression) or None for e in events], pa.string()),
        "RECOMMENDATION_ID": pa.array([e.recommendation_id for e in events], pa.string()),
    })
