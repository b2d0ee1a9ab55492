"""Dataset rows: Parquet parts per dataset, committed through a manifest (kernel.parts).

`<group>/<TYPE>/` of the datasets' object store (`<data dir>/datasets/` by default, the
bucket's `datasets/` prefix with OPZ_S3_BUCKET) holds `part-*.parquet` files (one per import
job: bulk data), `put-*.parquet` files (PutItems/PutUsers/PutActions records and
PutActionInteractions events, written by the dataset writer) and the manifest that lists what a
reader sees. FULL imports replace the bulk parts (records put individually stay, as in
Personalize); INCREMENTAL ones add a part.
Items, users and actions are upserted by id: of the rows of one id, the newest write wins (a
bulk row is as new as its import's commit, a put row as its record). Action interactions are
appended; each put row keeps its event's id, so an event written twice (sent twice with one
eventId, or delivered twice) is read once.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from kernel.contract import DatasetRecord, Event
from kernel.object_store import Folder, ObjectStore, objects_of
from kernel.parts import Manifest, Part, Parts

if TYPE_CHECKING:
    from kernel.settings import Settings

DATASETS_GROUP = "opz-datasets"  # consumer group that writes the records topics into the datasets
ID_COLUMN = {"ITEMS": "ITEM_ID", "USERS": "USER_ID", "ACTIONS": "ACTION_ID"}  # upsert keys; the rest append
AT = "__written_at"  # per-row write time of put parts
RECORD = "__record_id"  # appended put rows (action interactions): the event's id, read once
MAX_PUT_PARTS = 16  # more are merged into one, so a stream of small writes stays cheap to read


def _is_put(part: Part) -> bool:
    return part.name.startswith("put-")


class DatasetStore:
    def __init__(self, objects: ObjectStore | Path) -> None:
        self.objects = Folder(objects) if isinstance(objects, Path) else objects

    @classmethod
    def of(cls, settings: Settings) -> DatasetStore:
        return cls(objects_of(settings, "datasets"))

    def parts(self, dataset_group: str, dataset_type: str) -> Parts:
        return Parts(self.objects, f"{dataset_group}/{dataset_type}/")

    def manifest(self, dataset_group: str, dataset_type: str) -> Manifest:
        return self.parts(dataset_group, dataset_type).manifest()

    def new_part(self, dataset_group: str, dataset_type: str) -> Path:
        """A local file for an import to write its part into; `commit` stores and lists it."""
        return self.parts(dataset_group, dataset_type).staged()

    @staticmethod
    def discard(part: Path) -> None:
        """A part `new_part` gave that will not be committed."""
        Parts.discard(part)

    def commit(self, dataset_group: str, dataset_type: str, job_id: str, part: Path, rows: int, *,
               replace: bool) -> bool:
        """Make an import's part visible (after the others, or instead of the bulk ones).
        False if that job had committed already."""
        parts = self.parts(dataset_group, dataset_type)
        name = parts.upload(part)

        def add(old: Manifest) -> Manifest | None:
            if job_id in old.jobs:
                return None
            kept = [p for p in old.parts if _is_put(p)] if replace else old.parts
            return Manifest([*kept, Part(name, rows, time.time())], [*old.jobs, job_id], old.offsets)

        if parts.swap(add) is None:
            parts.objects.delete(parts.prefix + name)
            return False
        return True

    async def put_async(self, records: Sequence[DatasetRecord]) -> int:
        return await asyncio.to_thread(self.put, records)

    def put(self, records: Sequence[DatasetRecord]) -> int:
        """Upsert PutItems/PutUsers/PutActions records, append PutActionInteractions events
        (at-least-once delivery is fine: same id, same values; an event's id is read once);
        returns how many were written."""
        by_dataset: dict[tuple[str, str], list[DatasetRecord]] = {}
        for r in records:
            by_dataset.setdefault((r.dataset_group, r.dataset_type), []).append(r)
        for (group, kind), recs in by_dataset.items():
            key = ID_COLUMN.get(kind)
            columns = list(dict.fromkeys(f for r in recs for f in r.fields))  # from_pylist reads
            ids = {key: [r.id for r in recs]} if key else {RECORD: [r.record_id for r in recs]}
            table = pa.table({**ids,                                          # only the first row's keys
                              **{c: [r.fields.get(c) for r in recs] for c in columns},
                              AT: pa.array([r.received_at for r in recs], pa.float64())})
            parts = self.parts(group, kind)
            added = Part(parts.write(table, "put"), len(recs), 0.0)
            new = parts.swap(lambda old, added=added: Manifest(
                [*old.parts, Part(added.name, added.rows, time.time())], old.jobs, old.offsets))
            if new is not None and sum(map(_is_put, new.parts)) > MAX_PUT_PARTS:
                self._merge_puts(parts, key)
        return len(records)

    @staticmethod
    def _merge_puts(parts: Parts, key: str | None) -> None:
        def merged(old: Manifest) -> Manifest | None:
            puts = [p for p in old.parts if _is_put(p)]
            if len(puts) <= MAX_PUT_PARTS:  # another writer merged them first
                return None
            table = _concat([parts.read(p.name) for p in puts])
            table = newest(table, key) if key else once(table, RECORD)
            one = Part(parts.write(table, "put"), table.num_rows, max(p.at for p in puts))
            return Manifest([*(p for p in old.parts if not _is_put(p)), one], old.jobs, old.offsets)

        parts.swap(merged)

    def read(self, dataset_group: str, dataset_type: str, source: str = "ALL") -> pa.Table:
        """The dataset as one table; for items and users, the newest row per id. `source`
        is an export job's ingestionMode: BULK (imports), PUT (PutItems/PutUsers) or ALL."""
        parts = self.parts(dataset_group, dataset_type)

        def tables_of(manifest: Manifest) -> list[pa.Table]:
            tables = []
            for p in manifest.parts:
                if source != "ALL" and _is_put(p) != (source == "PUT"):
                    continue
                t = parts.read(p.name)
                if AT not in t.column_names:
                    t = t.append_column(AT, pa.array([p.at] * t.num_rows, pa.float64()))
                tables.append(t)
            return tables

        tables = parts.snapshot(tables_of)  # of one commit, though a merge deletes parts meanwhile
        if not tables:
            return pa.table({})
        table = _concat(tables)
        key = ID_COLUMN.get(dataset_type)
        if key:
            return newest(table, key).drop_columns([AT])
        if RECORD in table.column_names:
            table = once(table, RECORD).drop_columns([RECORD])
        return table.drop_columns([AT])

    def drop(self, dataset_group: str, dataset_type: str) -> None:
        self.parts(dataset_group, dataset_type).drop()

    def drop_group(self, dataset_group: str) -> None:
        Parts(self.objects, f"{dataset_group}/").drop()

    def erase(self, dataset_group: str, dataset_type: str, column: str, values: Collection[str]) -> set[str]:
        """Rewrite each part holding rows whose `column` is one of `values` without those rows,
        and commit the rewritten parts in their places (same kind, same time: an upsert's
        newest row stays the newest); returns the values found."""
        if not values:
            return set()
        parts = self.parts(dataset_group, dataset_type)
        wanted = pa.array(list(values), pa.string())
        found: set[str] = set()

        def without(old: Manifest) -> Manifest | None:
            found.clear()
            kept = []
            for p in old.parts:
                table = parts.read(p.name)
                hit = pc.fill_null(pc.is_in(table[column], value_set=wanted), False) \
                    if column in table.column_names else None
                if hit is None or not pc.any(hit).as_py():
                    kept.append(p)
                    continue
                found.update(pc.unique(table.filter(hit)[column]).to_pylist())
                rest = table.filter(pc.invert(hit))
                if rest.num_rows:
                    kept.append(Part(parts.write(rest, p.name.split("-", 1)[0]), rest.num_rows, p.at))
            return Manifest(kept, old.jobs, old.offsets) if found else None

        parts.swap(without)
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


def once(table: pa.Table, key: str) -> pa.Table:
    """Each `key`'s first-written row (ties: the earlier row); rows without a key all stay (bulk
    rows, which name no event), first."""
    has = pc.is_valid(table[key])
    keyless, keyed = table.filter(pc.invert(has)), table.filter(has)
    if not keyed.num_rows:
        return table
    keyed = keyed.append_column("__row", pa.array(range(keyed.num_rows), pa.int64()))
    order = pc.sort_indices(keyed, [(AT, "ascending"), ("__row", "ascending")])
    ranked = keyed.take(order).append_column("__rank", pa.array(range(keyed.num_rows), pa.int64()))
    first = ranked.group_by(key, use_threads=False).aggregate([("__rank", "min")])["__rank_min"]
    picked = ranked.take(first)
    picked = picked.take(pc.sort_indices(picked["__row"])).drop_columns(["__row", "__rank"])
    return _concat([keyless, picked]) if keyless.num_rows else picked


def interactions_from_events(events: Sequence[Event], fields: Sequence[str] = ()) -> pa.Table:
    """PutEvents records as INTERACTIONS rows. An anonymous event belongs to the user who later
    used its sessionId signed in (stitching, as Personalize does), else to the sessionId.
    `fields`: INTERACTIONS metadata fields (DEVICE, ...) to read from the events' `properties`,
    whose camelCase keys match them ignoring case and underscores; as strings, null where absent."""
    signed_in = {e.session_id: e.user_id for e in events if e.user_id is not None}
    extra = {name: pa.array([_property(e.properties, name) for e in events], pa.string()) for name in fields}
    return pa.table(extra | {
        "USER_ID": pa.array([e.user_id or signed_in.get(e.session_id, e.session_id) for e in events],
                            pa.string()),
        "ITEM_ID": pa.array([e.item_id for e in events], pa.string()),
        "TIMESTAMP": pa.array([int(e.sent_at) for e in events], pa.int64()),
        "EVENT_TYPE": pa.array([e.event_type for e in events], pa.string()),
        "EVENT_VALUE": pa.array([e.event_value for e in events], pa.float32()),
        "IMPRESSION": pa.array(["|".join(e.impression) or None for e in events], pa.string()),
        "RECOMMENDATION_ID": pa.array([e.recommendation_id for e in events], pa.string()),
    })


def _property(properties: dict[str, object] | None, field: str) -> str | None:
    """An event's value of an INTERACTIONS field from its properties (deviceType -> DEVICE_TYPE)."""
    want = field.replace("_", "").lower()
    value = next((v for k, v in (properties or {}).items() if k.replace("_", "").lower() == want), None)
    return None if value is None else str(value)
