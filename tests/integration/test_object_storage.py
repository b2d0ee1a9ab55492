"""Datasets and the events archive kept as Parquet parts, in a folder or in an S3 bucket.

Every test runs twice: on a folder (the embedded default's data dir) and on a fresh prefix of a
bucket of the real S3-compatible store. A manifest lists the parts a reader sees and is
replaced by compare-and-swap, so writers in several threads or processes never lose each
other's commits, a re-run import commits nothing, a redelivered Kafka batch stores nothing,
and the parts no manifest lists are collected.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import S3Service

import kernel.archive_parts as archive_parts
import kernel.datasets as datasets
import kernel.parts as parts_module
from kernel.archive import Archive, erase_events, read_events
from kernel.archive_parts import PartsArchive
from kernel.contract import DatasetRecord, Event
from kernel.datasets import DatasetStore
from kernel.object_store import Bucket, Folder, ObjectStore

pytestmark = pytest.mark.integration
TOPIC = "opz-events-g"


@pytest.fixture(scope="module")
def bucket(s3_service: S3Service) -> Iterator[str]:
    name = f"opz-{uuid.uuid4().hex[:12]}"
    client = s3_service.client()
    client.create_bucket(Bucket=name)
    yield name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture(params=["folder", "bucket"])
def open_objects(request: pytest.FixtureRequest, tmp_path: Path, unique: str,
                 monkeypatch: pytest.MonkeyPatch) -> Callable[[], ObjectStore]:
    """A factory: each call opens the same place anew, as another process would."""
    if request.param == "folder":
        root = tmp_path / "objects"
        return lambda: Folder(root)
    s3: S3Service = request.getfixturevalue("s3_service")
    name: str = request.getfixturevalue("bucket")
    for var, value in {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(var, value)  # the standard credential chain, as a deployment has it
    return lambda: Bucket(name, f"{unique}/", s3.endpoint)


@pytest.fixture
def objects(open_objects: Callable[[], ObjectStore]) -> ObjectStore:
    return open_objects()


def keys(objects: ObjectStore, prefix: str) -> set[str]:
    return {o.key for o in objects.list(prefix)}


def parquet_listed(objects: ObjectStore, prefix: str) -> set[str]:
    """The part files under `prefix`, by name."""
    return {k[len(prefix):] for k in keys(objects, prefix) if k.endswith(".parquet")}


# --- the object store ----------------------------------------------------------------------------

def test_an_object_is_read_back_as_it_was_written(objects: ObjectStore, tmp_path: Path) -> None:
    assert objects.get("a/missing.json") is None
    assert objects.put("a/one.json", b'{"n": 1}')
    got = objects.get("a/one.json")
    assert got is not None and got.body == b'{"n": 1}' and got.tag
    assert objects.put("a/one.json", b'{"n": 2}')  # unconditional: overwrites
    assert objects.get("a/one.json").body == b'{"n": 2}'  # type: ignore[union-attr]

    local = tmp_path / "local.bin"
    local.write_bytes(b"\x00part bytes\xff")
    objects.put_file("a/b/part-1.parquet", local)
    assert objects.get("a/b/part-1.parquet").body == b"\x00part bytes\xff"  # type: ignore[union-attr]

    objects.delete("a/one.json")
    assert objects.get("a/one.json") is None
    objects.delete("a/one.json")  # already gone: nothing to do, no error
    objects.delete("never/there.json")
    assert objects.describe("a/one.json").endswith("a/one.json")


def test_a_conditional_put_fails_when_another_writer_got_there_first(
        open_objects: Callable[[], ObjectStore]) -> None:
    mine, theirs = open_objects(), open_objects()
    assert mine.put("m.json", b"first", expect=None)  # only if absent
    assert not theirs.put("m.json", b"second", expect=None)  # it is there now
    assert mine.get("m.json").body == b"first"  # type: ignore[union-attr]

    read = mine.get("m.json")
    assert read is not None
    assert theirs.put("m.json", b"theirs", expect=read.tag)  # they read it too, and wrote first
    assert not mine.put("m.json", b"mine", expect=read.tag)  # my tag is stale
    fresh = mine.get("m.json")
    assert fresh is not None and fresh.body == b"theirs" and fresh.tag != read.tag
    assert mine.put("m.json", b"mine", expect=fresh.tag)
    assert theirs.get("m.json").body == b"mine"  # type: ignore[union-attr]
    assert not mine.put("gone.json", b"x", expect=fresh.tag)  # a tag expects an object there
    assert mine.get("gone.json") is None


def test_a_listing_holds_only_the_keys_under_its_prefix_with_their_times(
        objects: ObjectStore, tmp_path: Path) -> None:
    (tmp_path / "beside-the-folder.txt").write_text("not an object")  # the folder's sibling
    before = time.time()
    for key in ("g/ITEMS/manifest.json", "g/ITEMS/part-1.parquet", "g/USERS/part-2.parquet",
                "g2/ITEMS/part-3.parquet", "h/x.json"):
        objects.put(key, b"x")
    listed = objects.list("g/")
    assert [o.key for o in listed] == ["g/ITEMS/manifest.json", "g/ITEMS/part-1.parquet",
                                       "g/USERS/part-2.parquet"]  # not g2/
    assert all(before - 5 <= o.modified <= time.time() + 5 for o in listed)
    assert keys(objects, "g/ITEMS/") == {"g/ITEMS/manifest.json", "g/ITEMS/part-1.parquet"}
    assert keys(objects, "g") == {o.key for o in listed} | {"g2/ITEMS/part-3.parquet"}  # a plain prefix
    assert keys(objects, "") == {o.key for o in listed} | {"g2/ITEMS/part-3.parquet", "h/x.json"}
    assert objects.list("nothing/") == []


# --- datasets ------------------------------------------------------------------------------------

def imported(store: DatasetStore, kind: str, job: str, rows: dict[str, list], *,
             replace: bool = False) -> bool:
    """An import job's part: written locally, then committed."""
    part = store.new_part("g", kind)
    pq.write_table(pa.table(rows), part)
    return store.commit("g", kind, job, part, len(next(iter(rows.values()))), replace=replace)


def record(item: str, price: float, at: float, group: str = "g") -> DatasetRecord:
    return DatasetRecord(record_id=uuid.uuid4().hex, dataset_group=group, dataset_type="ITEMS", id=item,
                         fields={"PRICE": price}, received_at=at)


def prices(store: DatasetStore, source: str = "ALL") -> dict[str, float]:
    table = store.read("g", "ITEMS", source)
    return dict(zip(table["ITEM_ID"].to_pylist(), table["PRICE"].to_pylist(), strict=True)) \
        if table.num_rows else {}


def test_an_import_is_read_once_committed_and_a_rerun_commits_nothing(objects: ObjectStore) -> None:
    store = DatasetStore(objects)
    assert store.read("g", "INTERACTIONS").num_rows == 0
    assert imported(store, "INTERACTIONS", "job1", {"USER_ID": ["u1", "u2"], "ITEM_ID": ["i1", "i2"]})
    assert store.read("g", "INTERACTIONS").to_pylist() == [
        {"USER_ID": "u1", "ITEM_ID": "i1"}, {"USER_ID": "u2", "ITEM_ID": "i2"}]
    assert imported(store, "INTERACTIONS", "job2", {"USER_ID": ["u3"], "ITEM_ID": ["i3"]})
    # job1 again (a retried job): its new part is neither listed nor left behind
    assert not imported(store, "INTERACTIONS", "job1", {"USER_ID": ["u9"], "ITEM_ID": ["i9"]})
    assert store.read("g", "INTERACTIONS")["USER_ID"].to_pylist() == ["u1", "u2", "u3"]
    manifest = store.manifest("g", "INTERACTIONS")
    assert manifest.jobs == ["job1", "job2"] and manifest.rows == 3
    assert parquet_listed(objects, "g/INTERACTIONS/") == {p.name for p in manifest.parts}


def test_a_full_import_replaces_the_bulk_rows_and_keeps_the_records_put(objects: ObjectStore) -> None:
    store = DatasetStore(objects)
    now = time.time()
    assert imported(store, "ITEMS", "bulk1", {"ITEM_ID": ["i1", "i2"], "PRICE": [1.0, 2.0]})
    store.put([record("i3", 3.0, now), record("i2", 20.0, now + 1)])  # newer than bulk1's commit
    assert prices(store) == {"i1": 1.0, "i2": 20.0, "i3": 3.0}
    old_bulk = next(p.name for p in store.manifest("g", "ITEMS").parts if p.name.startswith("part-"))

    assert imported(store, "ITEMS", "bulk2", {"ITEM_ID": ["i4"], "PRICE": [4.0]}, replace=True)
    assert prices(store) == {"i2": 20.0, "i3": 3.0, "i4": 4.0}  # i1 was only in the replaced import
    assert prices(store, "BULK") == {"i4": 4.0}
    assert prices(store, "PUT") == {"i2": 20.0, "i3": 3.0}
    assert old_bulk not in parquet_listed(objects, "g/ITEMS/")  # deleted once no longer listed
    assert parquet_listed(objects, "g/ITEMS/") == {p.name for p in store.manifest("g", "ITEMS").parts}


def test_records_put_are_upserted_the_newest_wins_and_many_puts_are_merged(objects: ObjectStore) -> None:
    store = DatasetStore(objects)
    now = time.time()
    store.put([record("i1", 1.0, now), record("i2", 2.0, now)])
    store.put([record("i1", 10.0, now + 2)])
    store.put([record("i1", 5.0, now + 1)])  # delivered late: older than the write before it
    assert prices(store) == {"i1": 10.0, "i2": 2.0}

    for n in range(datasets.MAX_PUT_PARTS + 2):
        store.put([record(f"n{n}", float(n), now + 3), record("i2", 100.0 + n, now + 3 + n)])
    manifest = store.manifest("g", "ITEMS")
    assert 1 <= len(manifest.parts) <= datasets.MAX_PUT_PARTS
    assert prices(store) == {"i1": 10.0, "i2": 100.0 + datasets.MAX_PUT_PARTS + 1,
                             **{f"n{n}": float(n) for n in range(datasets.MAX_PUT_PARTS + 2)}}
    assert parquet_listed(objects, "g/ITEMS/") == {p.name for p in manifest.parts}  # merged ones deleted


def test_erasing_rewrites_only_the_parts_holding_the_values(objects: ObjectStore) -> None:
    store = DatasetStore(objects)
    imported(store, "INTERACTIONS", "job0", {"USER_ID": ["a", "b", "a"], "ITEM_ID": ["i0", "i1", "i2"]})
    imported(store, "INTERACTIONS", "job1", {"USER_ID": ["c"], "ITEM_ID": ["i3"]})
    imported(store, "INTERACTIONS", "job2", {"USER_ID": ["a"], "ITEM_ID": ["i4"]})  # only a: no part left
    before = store.manifest("g", "INTERACTIONS").parts
    assert store.erase("g", "INTERACTIONS", "USER_ID", ["a", "z"]) == {"a"}
    assert store.read("g", "INTERACTIONS").to_pylist() == [{"USER_ID": "b", "ITEM_ID": "i1"},
                                                           {"USER_ID": "c", "ITEM_ID": "i3"}]
    after = store.manifest("g", "INTERACTIONS")
    assert after.parts[1] == before[1]  # c's part: untouched, same name
    assert len(after.parts) == 2 and after.parts[0].name != before[0].name and after.parts[0].rows == 1
    assert after.parts[0].at == before[0].at  # same commit time: an upsert's order stays
    assert after.jobs == ["job0", "job1", "job2"]
    assert parquet_listed(objects, "g/INTERACTIONS/") == {p.name for p in after.parts}
    assert store.erase("g", "INTERACTIONS", "USER_ID", ["z"]) == set()
    assert store.manifest("g", "INTERACTIONS") == after  # nothing found: nothing rewritten

    store.put([DatasetRecord(record_id=f"r-{u}", dataset_group="g", dataset_type="USERS", id=u,
                             fields={"AGE": 30}, received_at=time.time()) for u in ("b", "d")])
    assert store.erase("g", "USERS", "USER_ID", ["b", "c"]) == {"b"}
    assert store.read("g", "USERS")["USER_ID"].to_pylist() == ["d"]


def test_dropping_a_dataset_or_a_group_leaves_nothing_listed(objects: ObjectStore) -> None:
    store = DatasetStore(objects)
    imported(store, "INTERACTIONS", "job", {"USER_ID": ["u"], "ITEM_ID": ["i"]})
    store.put([record("i", 1.0, time.time()), record("j", 1.0, time.time(), group="other")])
    store.drop("g", "ITEMS")
    assert keys(objects, "g/ITEMS/") == set() and store.read("g", "ITEMS").num_rows == 0
    assert store.read("g", "INTERACTIONS").num_rows == 1
    store.drop_group("g")
    assert keys(objects, "g/") == set() and store.read("g", "INTERACTIONS").num_rows == 0
    assert store.manifest("g", "INTERACTIONS").jobs == []  # a new group of that name starts afresh
    assert prices(DatasetStore(objects), "ALL") == {}
    assert store.read("other", "ITEMS")["ITEM_ID"].to_pylist() == ["j"]  # another group's
    store.drop_group("never-made")


def test_concurrent_writers_lose_none_of_each_others_commits(open_objects: Callable[[], ObjectStore]) -> None:
    """Three writers at once: two threads sharing one store, one with a store of its own (on a
    bucket: another process's client). Each commit swaps the manifest by compare-and-swap, and
    a reader meanwhile (a trainer) sees the table grow, never a part a merge has just deleted."""
    shared, own, reader = (DatasetStore(open_objects()) for _ in range(3))
    errors: list[BaseException] = []
    start, writing = threading.Barrier(4), threading.Event()
    seen: list[set[str]] = []

    def writer(store: DatasetStore, name: str) -> None:
        try:
            start.wait()
            for n in range(20):
                store.put([record(f"{name}-{n}", float(n), time.time())])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def read() -> None:
        try:
            start.wait()
            while writing.is_set():
                seen.append(set(prices(reader)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, name))
               for s, name in ((shared, "a"), (shared, "b"), (own, "c"))]
    writing.set()
    watcher = threading.Thread(target=read)
    for t in (*threads, watcher):
        t.start()
    for t in threads:
        t.join()
    writing.clear()
    watcher.join()
    assert errors == []
    assert seen and all(a <= b for a, b in zip(seen, seen[1:], strict=False))  # whole commits, in order
    assert set(prices(shared)) == {f"{name}-{n}" for name in "abc" for n in range(20)}
    manifest = shared.manifest("g", "ITEMS")
    assert manifest.rows == 60 and len(manifest.parts) <= datasets.MAX_PUT_PARTS
    assert parquet_listed(shared.objects, "g/ITEMS/") == {p.name for p in manifest.parts}  # no orphans


def test_a_part_no_manifest_lists_is_collected_once_old(
        objects: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that crashed between storing its part and committing it leaves an orphan."""
    store = DatasetStore(objects)
    imported(store, "INTERACTIONS", "job1", {"USER_ID": ["u1"], "ITEM_ID": ["i1"]})
    objects.put("g/INTERACTIONS/part-crashed.parquet", b"half a part")
    objects.put("g/INTERACTIONS/notes.txt", b"not a part")
    imported(store, "INTERACTIONS", "job2", {"USER_ID": ["u2"], "ITEM_ID": ["i2"]})
    assert "part-crashed.parquet" in parquet_listed(objects, "g/INTERACTIONS/")  # young: may be committing

    orphan = next(o for o in objects.list("g/INTERACTIONS/") if o.key.endswith("part-crashed.parquet"))
    while time.time() <= orphan.modified:  # older than 0 seconds, whatever the store's clock resolution
        time.sleep(0.05)
    monkeypatch.setattr(parts_module, "ORPHAN_AGE_S", 0)
    imported(store, "INTERACTIONS", "job3", {"USER_ID": ["u3"], "ITEM_ID": ["i3"]})
    manifest = store.manifest("g", "INTERACTIONS")
    assert parquet_listed(objects, "g/INTERACTIONS/") == {p.name for p in manifest.parts}
    assert len(manifest.parts) == 3 and "g/INTERACTIONS/notes.txt" in keys(objects, "g/INTERACTIONS/")
    assert store.read("g", "INTERACTIONS")["USER_ID"].to_pylist() == ["u1", "u2", "u3"]


# --- the events archive --------------------------------------------------------------------------

def ev(i: int | str, user: str | None = "u", session: str = "s", *, item: str | None = None,
       sent_at: float | None = None) -> Event:
    return Event(event_id=f"e{i}", dataset_group="g", tracking_id="t", user_id=user, session_id=session,
                 event_type="click", item_id=item or f"i{i}",
                 sent_at=1_700_000_000.0 if sent_at is None else sent_at, received_at=0.0)


def ids(events: list[Event]) -> list[str]:
    return [e.event_id for e in events]


def test_archived_events_are_read_in_order_and_a_redelivery_stores_nothing(objects: ObjectStore) -> None:
    archive = PartsArchive(objects)
    assert archive.read("g") == [] and archive.offsets("g") == {}
    assert archive.store("g", TOPIC, 0, [(0, ev(0)), (1, ev(1)), (2, ev(2))], 3).new == 3
    assert archive.store("g", TOPIC, 1, [(0, ev(3))], 1).new == 1
    assert ids(archive.read("g")) == ["e0", "e1", "e2", "e3"]
    assert archive.offsets("g") == {f"{TOPIC}:0": 3, f"{TOPIC}:1": 1}

    # a worker crashed after its commit and before Kafka's: the batch comes again, with a new event
    done = archive.store("g", TOPIC, 0, [(1, ev(1)), (2, ev(2)), (3, ev(4))], 4)
    assert done.new == 1 and done.refused == ()
    assert archive.offsets("g")[f"{TOPIC}:0"] == 4
    assert archive.store("g", TOPIC, 0, [(0, ev(0))], 1).new == 0  # all below: nothing, offset stays
    assert archive.offsets("g") == {f"{TOPIC}:0": 4, f"{TOPIC}:1": 1}
    assert ids(archive.read("g")) == ["e0", "e1", "e2", "e3", "e4"]

    # the client sent e0 twice: stored at its new offset, read once, as first sent
    assert archive.store("g", TOPIC, 0, [(4, ev(0, item="other"))], 5).new == 1
    read = archive.read("g")
    assert ids(read) == ["e0", "e1", "e2", "e3", "e4"] and read[0].item_id == "i0"
    assert archive.parts("g").manifest().rows == 6

    poison = ev("poison", sent_at=1e17)  # milliseconds, and then some
    done = archive.store("g", TOPIC, 0, [(5, poison), (6, ev(5))], 7)
    assert done.new == 1 and [r.event.event_id for r in done.refused] == ["epoison"]
    assert ids(archive.read("g")) == ["e0", "e1", "e2", "e3", "e4", "e5"]
    assert archive.offsets("g")[f"{TOPIC}:0"] == 7  # not read again
    assert archive.read("h") == []  # another dataset group's archive


ERASURE_EVENTS = [
    ev(0, None, "s1"), ev(1, "alice", "s1"),  # alice signed in on s1: e0 is hers in training
    ev(2, "bob", "s2"), ev(3, None, "s3"),  # s3: a visitor who never signed in
    ev(4, None, "s4"), ev(5, "alice", "s5"), ev(6, None, "s5"), ev(7, "carol", "s6"),
    ev(8, "bob", "s1"), ev(1, "alice", "s1"),  # e1 again: a client's retry
]


@pytest.mark.parametrize("users", [["alice", "s3", "nobody"], ["bob"], ["s4", "carol"], ["nobody"]])
async def test_erasing_users_from_the_parts_archive_erases_what_the_sqlite_archive_does(
        objects: ObjectStore, tmp_path: Path, users: list[str]) -> None:
    sqlite = Archive(tmp_path / "sqlite")
    await sqlite.start()
    try:
        await sqlite.add(ERASURE_EVENTS)
    finally:
        await sqlite.close()
    archive = PartsArchive(objects)
    for start in range(0, len(ERASURE_EVENTS), 3):  # a few parts, as a few windows would store them
        batch = ERASURE_EVENTS[start:start + 3]
        archive.store("g", TOPIC, 0, list(enumerate(batch, start)), start + len(batch))
    archive.store("h", TOPIC, 0, [(0, ev(1, "alice", "s1"))], 1)
    assert ids(archive.read("g")) == ids(read_events(tmp_path / "sqlite", "g"))
    offsets = archive.offsets("g")

    erased = archive.erase("g", users)
    assert erased == erase_events(tmp_path / "sqlite", "g", users)
    assert ids(archive.read("g")) == ids(read_events(tmp_path / "sqlite", "g"))
    assert archive.offsets("g") == offsets
    manifest = archive.parts("g").manifest()
    assert parquet_listed(objects, "g/") == {p.name for p in manifest.parts}  # rewritten ones deleted
    for p in manifest.parts:  # the bytes too, the duplicate read skips included
        table = archive.parts("g").read(p.name)
        assert not set(users) & set(table["user_id"].to_pylist()) - {None}
    assert ids(archive.read("h")) == ["e1"]  # another dataset group's


def test_erasing_every_event_keeps_the_offsets_and_dropping_removes_them(objects: ObjectStore) -> None:
    archive = PartsArchive(objects)
    archive.store("g", TOPIC, 0, [(0, ev(0)), (1, ev(1))], 2)
    assert archive.erase("g") == (set(), set())
    assert archive.read("g") == [] and archive.offsets("g") == {f"{TOPIC}:0": 2}
    assert parquet_listed(objects, "g/") == set()
    assert archive.store("g", TOPIC, 0, [(1, ev(1)), (2, ev(2))], 3).new == 1  # erased ones stay erased
    assert ids(archive.read("g")) == ["e2"]
    assert archive.erase("never-archived", ["alice"]) == (set(), set())

    archive.drop("g")
    assert archive.read("g") == [] and archive.offsets("g") == {}
    assert keys(objects, "g/") == set()


def test_many_small_parts_are_merged_and_read_the_same(
        objects: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_parts, "MERGE_AT", 6)  # the same rule as at 32, in fewer commits
    archive = PartsArchive(objects)
    events = [ev(n) for n in range(8)] + [ev(3, item="again")]  # e3 twice: read once, the first
    for offset, e in enumerate(events):
        archive.store("g", TOPIC, offset % 2, [(offset // 2, e)], offset // 2 + 1)
    manifest = archive.parts("g").manifest()
    assert len(manifest.parts) <= 6 and manifest.rows == 9
    read = archive.read("g")
    assert ids(read) == [f"e{n}" for n in range(8)] and read[3].item_id == "i3"
    assert manifest.offsets == {f"{TOPIC}:0": 5, f"{TOPIC}:1": 4}
    assert parquet_listed(objects, "g/") == {p.name for p in manifest.parts}
