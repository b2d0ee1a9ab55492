"""A table as Parquet part files listed by a manifest, in a folder or a bucket (kernel.object_store).

A writer stores its part first, then swaps the manifest by compare-and-swap: it reads the
manifest with its version, computes the new one, and writes it only if nobody changed it in
between, else starts over from the newer one. So a reader sees the old table or the new one,
never half of it, and writers in any number of processes on any hosts never undo each other's
commits. Parts a commit stops listing are deleted after it; a part no manifest lists, older
than ORPHAN_AGE_S, was left by a writer that crashed before its commit, and is deleted too.
"""
from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from kernel.object_store import Folder, ObjectStore, StoreUnreachable

MANIFEST = "manifest.json"
ORPHAN_AGE_S = 600
SWAP_TRIES = 100  # commits that lost the race to another writer before one gives up
T = TypeVar("T")


class PartMissing(StoreUnreachable):
    """A part the manifest lists is not there: most often a newer commit unlisted and deleted it
    after the manifest was read (`swap` and `snapshot` then start over from the newer one)."""


@dataclass
class Part:
    name: str
    rows: int
    at: float  # commit time


@dataclass
class Manifest:
    parts: list[Part] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # committed import jobs: a re-run commits nothing
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next offset to store

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, body: bytes) -> Manifest:
        doc = orjson.loads(body)
        return cls([Part(**p) for p in doc["parts"]], doc.get("jobs", []), doc.get("offsets", {}))


Change = Callable[[Manifest], Manifest | None]  # the new manifest, or None to leave it as it is


class Parts:
    """One table's parts under `prefix` of `objects`."""

    def __init__(self, objects: ObjectStore, prefix: str) -> None:
        self.objects, self.prefix = objects, prefix
        self._swapping = threading.local()  # .written: the parts `write` stored in a swap's change

    def manifest(self) -> Manifest:
        got = self.objects.get(self.prefix + MANIFEST)
        return Manifest.from_json(got.body) if got else Manifest()

    def staged(self, kind: str = "part") -> Path:
        """A local file to write a new part into; `upload` stores it under its file name, which
        no commit lists yet. In a folder it is written beside its final place (one rename)."""
        base = self.objects.root / ".staging" if isinstance(self.objects, Folder) \
            else Path(tempfile.gettempdir()) / "opz-staging"
        _sweep(base)
        directory = base / uuid.uuid4().hex
        directory.mkdir(parents=True)
        return directory / f"{kind}-{uuid.uuid4().hex}.parquet"

    @staticmethod
    def discard(staged: Path) -> None:
        shutil.rmtree(staged.parent, ignore_errors=True)

    def upload(self, staged: Path) -> str:
        """Store a staged part file (and forget the local one); returns its part name."""
        try:
            self.objects.put_file(self.prefix + staged.name, staged)
        finally:
            self.discard(staged)
        return staged.name

    def write(self, table: pa.Table, kind: str) -> str:
        """A new, not yet listed part holding `table`; its name."""
        staged = self.staged(kind)
        try:
            pq.write_table(table, staged, compression="zstd")
        except BaseException:
            self.discard(staged)
            raise
        name = self.upload(staged)
        if (written := getattr(self._swapping, "written", None)) is not None:
            written.append(name)
        return name

    def read(self, name: str) -> pa.Table:
        got = self.objects.get(self.prefix + name)
        if got is None:
            raise PartMissing(f"{self.objects.describe(self.prefix + name)} is listed but missing")
        return pq.read_table(pa.BufferReader(got.body))

    def snapshot(self, read: Callable[[Manifest], T]) -> T:
        """`read` of the manifest and the parts it lists, all of one commit: a reader whose parts
        a newer commit deleted under it (a merge, an erasure, a FULL import) reads that one."""
        key = self.prefix + MANIFEST
        for _ in range(SWAP_TRIES):
            got = self.objects.get(key)
            try:
                return read(Manifest.from_json(got.body) if got else Manifest())
            except PartMissing:
                if self._tag() == (got.tag if got else None):  # no newer commit: really missing
                    raise
        raise StoreUnreachable(f"{self.objects.describe(key)} changed under {SWAP_TRIES} reads in a row")

    def _tag(self) -> str | None:
        got = self.objects.get(self.prefix + MANIFEST)
        return got.tag if got else None

    def swap(self, change: Change) -> Manifest | None:
        """Apply `change` to the manifest as one atomic step; the manifest written, or None when
        `change` left it as it was. `change` may run more than once (after a lost race), each
        time on the newest manifest."""
        key = self.prefix + MANIFEST
        for attempt in range(SWAP_TRIES):
            got = self.objects.get(key)
            tag = got.tag if got else None
            old = Manifest.from_json(got.body) if got else Manifest()
            self._swapping.written = written = []  # parts `change` writes: unlisted unless committed
            try:
                new = change(old)
            except PartMissing:  # a part `old` lists was deleted by a newer commit: redo on that one
                self._delete(written)
                if self._tag() == tag:
                    raise
                continue
            except BaseException:
                self._delete(written)
                raise
            finally:
                self._swapping.written = None
            if new is None:
                self._delete(written)
                return None
            if self.objects.put(key, new.to_json(), expect=tag):
                self._collect(old, new)
                return new
            self._delete(written)  # lost the race: no manifest will list them
            time.sleep(random.uniform(0, 0.01 * min(attempt + 1, 20)))
        raise StoreUnreachable(f"{self.objects.describe(key)} changed under {SWAP_TRIES} commits in a row")

    def _delete(self, names: list[str]) -> None:
        for name in names:
            self.objects.delete(self.prefix + name)

    def _collect(self, old: Manifest, new: Manifest) -> None:
        listed = {p.name for p in new.parts}
        for name in {p.name for p in old.parts} - listed:
            self.objects.delete(self.prefix + name)
        now = time.time()
        for obj in self.objects.list(self.prefix):
            name = obj.key[len(self.prefix):]
            if name.endswith(".parquet") and "/" not in name and name not in listed \
                    and now - obj.modified > ORPHAN_AGE_S:
                self.objects.delete(obj.key)

    def drop(self) -> None:
        """Everything under the prefix, manifests first (a reader then sees an empty table,
        never a partial one)."""
        self.objects.delete(self.prefix + MANIFEST)
        found = self.objects.list(self.prefix)
        for obj in sorted(found, key=lambda o: not o.key.endswith("/" + MANIFEST)):
            self.objects.delete(obj.key)


def _sweep(staging: Path) -> None:
    """Staged files of writers that crashed before their upload."""
    if not staging.is_dir():
        return
    for directory in staging.iterdir():
        try:  # a file still being written is recent, however old its folder
            touched = max(p.stat().st_mtime for p in (directory, *directory.iterdir()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if time.time() - touched > ORPHAN_AGE_S:
            shutil.rmtree(directory, ignore_errors=True)
