"""Dataset rows on disk: Parquet part files per dataset, committed through a manifest.

`<data dir>/datasets/<dataset group>/<TYPE>/` holds one or more `part-*.parquet` files
(one per import job, partitioned by import) and `manifest.json`, the list of parts a
reader sees. A job writes its parts first and then replaces the manifest in one
`os.replace`, so a crash leaves either the old dataset or the new one, never half.
FULL imports replace the part list; INCREMENTAL ones append to it. Items and users are
upserted by id (the newest part wins), as Personalize does.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stream.contract import Event

ID_COLUMN = {"ITEMS": "ITEM_ID", "USERS": "USER_ID"}  # upsert keys; interactions only append


@dataclass
class Manifest:
    parts: list[str] = field(default_factory=list)
    rows: int = 0  # rows in the parts (before the upsert by id)
    jobs: list[str] = field(default_factory=list)  # committed job ids: a re-run commits nothing


class DatasetStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # one committer at a time per process

    def path(self, dataset_group: str, dataset_type: str) -> Path:
        return self.root / dataset_group / dataset_type

    def manifest(self, dataset_group: str, dataset_type: str) -> Manifest:
        f = self.path(dataset_group, dataset_type) / "manifest.json"
        return Manifest(**orjson.loads(f.read_bytes())) if f.exists() else Manifest()

    def new_part(self, dataset_group: str, dataset_type: str) -> Path:
        """A fresh part file name; it is invisible to readers until `commit` lists it."""
        d = self.path(dataset_group, dataset_type)
        d.mkdir(parents=True, exist_ok=True)
        return d / f"part-{uuid.uuid4().hex}.parquet"

    def commit(self, dataset_group: str, dataset_type: str, job_id: str, parts: list[Path],
               rows: int, *, replace: bool) -> bool:
        """Make `parts` visible (after the old ones, or instead of them). False if already done."""
        d = self.path(dataset_group, dataset_type)
        with self._lock:
            old = self.manifest(dataset_group, dataset_type)
            if job_id in old.jobs:
                return False
            names = [p.name for p in parts]
            new = (Manifest(names, rows, [job_id]) if replace else
                   Manifest(old.parts + names, old.rows + rows, old.jobs + [job_id]))
            tmp = d / f".manifest-{uuid.uuid4().hex}.json"
            with open(tmp, "wb") as f:
                f.write(orjson.dumps(new.__dict__))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / "manifest.json")
            if replace:
                for name in set(old.parts) - set(names):
                    (d / name).unlink(missing_ok=True)
        return True

    def read(self, dataset_group: str, dataset_type: str, columns: list[str] | None = None) -> pa.Table:
        """The dataset as one table; for items and users, the newest row per id."""
        d = self.path(dataset_group, dataset_type)
        parts = self.manifest(dataset_group, dataset_type).parts
        if not parts:
            return pa.table({})
        # parts written before an UpdateDataset lack the new columns: promote to the union
        table = pa.concat_tables([pq.read_table(d / p) for p in parts], promote_options="default")
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        key = ID_COLUMN.get(dataset_type)
        if key is None or key not in table.column_names:
            return table
        table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        newest = table.group_by(key, use_threads=False).aggregate([("__row", "max")])["__row_max"]
        return table.take(pc.take(newest, pc.sort_indices(newest))).drop_columns(["__row"])

    def drop(self, dataset_group: str, dataset_type: str) -> None:
        shutil.rmtree(self.path(dataset_group, dataset_type), ignore_errors=True)


def interactions_from_events(events: Sequence[Event]) -> pa.Table:
    """PutEvents records as INTERACTIONS rows (anonymous sessions under their sessionId)."""
    return pa.table({
        "USER_ID": pa.array([e.user_id or e.session_id for e in events], pa.string()),
        "ITEM_ID": pa.array([e.item_id for e in events], pa.string()),
        "TIMESTAMP": pa.array([int(e.sent_at) for e in events], pa.int64()),
        "EVENT_TYPE": pa.array([e.event_type for e in events], pa.string()),
        "EVENT_VALUE": pa.array([e.event_value for e in events], pa.float32()),
        "IMPRESSION": pa.array(["|".join(e.impression) or None for e in events], pa.string()),
        "RECOMMENDATION_ID": pa.array([e.recommendation_id for e in events], pa.string()),
    })
