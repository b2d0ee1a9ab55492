"""The events archive as Parquet parts: distributed mode's archive, in the bucket or the data dir.

Each dataset group's archive is a table of parts (kernel.parts) under `archive/<group>/` of
the bucket (OPZ_S3_BUCKET) or of the data dir. The stream workers' archive writer
(stream.archive_writer) stores one part per
Kafka partition and time window, and the same manifest swap that lists the part records the
partition's next offset: the archive holds exactly the events before that offset, so a writer
that crashes before the swap re-reads them, one that crashes after it resumes past them, and
no row is lost or stored twice. A client's eventId sent twice is stored twice (two offsets)
and read once, the first, as Personalize ignores later events with the same event ID.
"""
from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from kernel.archive import Archived, ArchiveFiles, Erased, Unarchivable, archive_row
from kernel.contract import Event, decode_event
from kernel.object_store import ObjectStore, objects_of
from kernel.parts import Manifest, Part, Parts

if TYPE_CHECKING:
    from kernel.settings import Settings

SCHEMA = pa.schema([("event_id", pa.string()), ("day", pa.string()), ("user_id", pa.string()),
                    ("session_id", pa.string()), ("record", pa.binary())])
MERGE_AT = 32  # parts; more small ones are merged into one, so reading stays a few large reads
SMALL_ROWS = 100_000  # a part this large is left as it is by merges (each merge rewrites the small)


class ArchiveReader(Protocol):
    """What training, exports and erasure do with a dataset group's archived events."""

    def read(self, dataset_group: str) -> list[Event]: ...

    def erase(self, dataset_group: str, users: Collection[str] | None = None) -> Erased: ...

    def drop(self, dataset_group: str) -> None: ...


def archive_of(settings: Settings) -> ArchiveReader:
    """Distributed mode's parts (the stream workers write them from Kafka), or the embedded
    server's SQLite archive beside its log, bucket or not."""
    if settings.embedded:
        return ArchiveFiles(settings.data_dir / "archive")
    return PartsArchive.of(settings)


def offset_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def rows_of(events: Sequence[Event]) -> tuple[pa.Table, list[Unarchivable]]:
    """The events as archive rows, and those it has no row for (kernel.archive.archive_row)."""
    kept, refused = [], []
    for e in events:
        try:
            row = archive_row(e)
        except Unarchivable as exc:
            refused.append(exc)
            continue
        kept.append((e.event_id, row[1], e.user_id, e.session_id, row[6]))
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in kept], SCHEMA), refused


class PartsArchive:
    """`legacy`: the SQLite archive a worker of an earlier release wrote in the data dir (before
    the archive became parts): read and erased with the parts, so an upgrade loses nothing."""

    def __init__(self, objects: ObjectStore, legacy: ArchiveFiles | None = None) -> None:
        self.objects, self.legacy = objects, legacy

    @classmethod
    def of(cls, settings: Settings) -> PartsArchive:
        return cls(objects_of(settings, "archive"), ArchiveFiles(settings.data_dir / "archive"))

    def parts(self, dataset_group: str) -> Parts:
        return Parts(self.objects, f"{dataset_group}/")

    def offsets(self, dataset_group: str) -> dict[str, int]:
        """"topic:partition" -> the offset of the first event not archived yet."""
        return self.parts(dataset_group).manifest().offsets

    def store(self, dataset_group: str, topic: str, partition: int, events: Sequence[tuple[int, Event]],
              next_offset: int) -> Archived:
        """Archive one partition's events (offset, event) and advance its offset to `next_offset`
        in one commit. Events below the offset the archive already holds are skipped (a writer
        that lost its partition to another which stored them first)."""
        parts, key = self.parts(dataset_group), offset_key(topic, partition)
        done = self.offsets(dataset_group).get(key, 0)
        table, refused = rows_of([e for offset, e in events if offset >= done])
        name = parts.write(table, "events") if table.num_rows else None

        def add(old: Manifest) -> Manifest | None:
            if old.offsets.get(key, 0) != done:  # another writer stored some of these: start over
                raise _Moved
            listed = [*old.parts, Part(name, table.num_rows, time.time())] if name else old.parts
            return Manifest(listed, old.jobs, {**old.offsets, key: max(next_offset, done)})

        try:
            new = parts.swap(add)
        except _Moved:
            if name:
                parts.objects.delete(parts.prefix + name)
            return self.store(dataset_group, topic, partition, events, next_offset)
        if new is not None and sum(p.rows < SMALL_ROWS for p in new.parts) > MERGE_AT:
            self._merge(parts)
        return Archived(table.num_rows, tuple(refused))

    @staticmethod
    def _merge(parts: Parts) -> None:
        def merged(old: Manifest) -> Manifest | None:
            small = [p for p in old.parts if p.rows < SMALL_ROWS]
            if len(small) <= MERGE_AT:
                return None
            table = pa.concat_tables([parts.read(p.name) for p in small])
            one = Part(parts.write(table, "events"), table.num_rows, max(p.at for p in small))
            big = [p for p in old.parts if p.rows >= SMALL_ROWS]
            return Manifest([*big, one], old.jobs, old.offsets)  # order of arrival: big ones are older

        parts.swap(merged)

    def table(self, dataset_group: str) -> pa.Table:
        """Every archived row, in the order stored, each event id once (its first)."""
        parts = self.parts(dataset_group)
        tables = parts.snapshot(lambda manifest: [parts.read(p.name) for p in manifest.parts])
        if not tables:
            return SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        table = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        first = table.group_by("event_id", use_threads=False).aggregate([("__row", "min")])["__row_min"]
        return table.take(pc.take(first, pc.sort_indices(first))).drop_columns(["__row"])  # rows, in order

    def read(self, dataset_group: str) -> list[Event]:
        """A dataset group's events in the order they were stored (the legacy archive's first),
        each event id once."""
        events = [decode_event(r) for r in self.table(dataset_group)["record"].to_pylist()]
        if self.legacy is None or not (old := self.legacy.read(dataset_group)):
            return events
        seen = {e.event_id for e in old}
        return [*old, *(e for e in events if e.event_id not in seen)]

    def erase(self, dataset_group: str, users: Collection[str] | None = None) -> Erased:
        """As kernel.archive.erase_events: every event, or the users' own and the anonymous ones
        of their sessions (and of a user id that is a sessionId); the offsets stay, so the
        erased events are not archived again."""
        parts = self.parts(dataset_group)
        before = self.legacy.erase(dataset_group, users) if self.legacy else Erased(set(), set())
        if users is None:
            parts.swap(lambda old: Manifest([], old.jobs, old.offsets) if old.parts else None)
            return Erased(set(), set())
        wanted = pa.array(sorted(users), pa.string())
        result = Erased(set(), set())

        def without(old: Manifest) -> Manifest | None:
            tables = {p.name: parts.read(p.name) for p in old.parts}
            sessions = set()
            for t in tables.values():
                sessions.update(pc.unique(t.filter(pc.is_in(t["user_id"], value_set=wanted))["session_id"])
                                .to_pylist())
            anonymous_of = pa.array(sorted(sessions | set(users)), pa.string())
            kept, found = [], set()
            for p in old.parts:
                t = tables[p.name]
                hit = pc.fill_null(pc.or_(pc.is_in(t["user_id"], value_set=wanted), pc.and_(
                    pc.is_null(t["user_id"]), pc.is_in(t["session_id"], value_set=anonymous_of))), False)
                if not pc.any(hit).as_py():
                    kept.append(p)
                    continue
                gone = t.filter(hit)
                found |= {u if u is not None else s for u, s in zip(
                    gone["user_id"].to_pylist(), gone["session_id"].to_pylist(), strict=True)}
                rest = t.filter(pc.invert(hit))
                if rest.num_rows:
                    kept.append(Part(parts.write(rest, "events"), rest.num_rows, p.at))
            result.users.clear()
            result.users.update(found & set(users))
            result.sessions.clear()
            result.sessions.update(sessions)
            return Manifest(kept, old.jobs, old.offsets) if found else None

        parts.swap(without)
        return Erased(result.users | before.users, result.sessions | before.sessions)

    def drop(self, dataset_group: str) -> None:
        """The dataset group's archive, offsets and all (its topic is gone with it)."""
        self.parts(dataset_group).drop()
        if self.legacy is not None:
            self.legacy.drop(dataset_group)


class _Moved(Exception):
    """The partition's offset moved between reading it and committing: redo with the new one."""
