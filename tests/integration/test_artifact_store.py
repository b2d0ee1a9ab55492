"""Model artifacts in a bucket (OPZ_S3_BUCKET), against the real S3-compatible store.

A trainer on one host publishes; an API process or a stream worker on another, with an empty
data dir of its own, loads the same model from the bucket through its verified cache. A
changed object is refused and never cached, an artifact without its manifest does not exist
yet, and two processes filling one cache at once both end with whole files.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import S3Service

from kernel.archive import Archive
from kernel.artifact_store import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    ArtifactUnreachable,
    artifact_location,
)
from kernel.contract import ArtifactManifest, Event
from kernel.settings import Settings
from serving.models import Models, load
from stream.live_state import LiveModels
from stream.stores import sqlite_stores
from training.synthetic import write_artifact
from training.trainer import Trainer

pytestmark = pytest.mark.integration
POPULARITY = "arn:aws:personalize:::recipe/aws-popularity-count"


@pytest.fixture(autouse=True)
def credentials(s3_service: S3Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The store's root key through the standard AWS chain (what a deployment's environment has)."""
    chain = {"AWS_ACCESS_KEY_ID": s3_service.access_key, "AWS_SECRET_ACCESS_KEY": s3_service.secret_key,
             "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in chain.items():
        monkeypatch.setenv(name, value)
    yield


def settings_of(data_dir: Path, s3: S3Service, bucket: str) -> Settings:
    """One process's settings: its own data dir, the shared bucket."""
    return Settings(data_dir=data_dir, s3_bucket=bucket, s3_endpoint_url=s3.endpoint)


def arn(unique: str) -> str:
    return f"arn:aws:personalize:us-east-1:000000000000:solution/{unique}/v{uuid.uuid4().hex[:8]}"


def published_hrnn(tmp_path: Path, store: ArtifactStore, version_arn: str) -> str:
    """A small synthetic HRNN artifact (the trainer's layout), published by `store`."""
    location = artifact_location(version_arn)
    staged = store.staging(location)
    write_artifact(staged, 300, n_users=200, hidden=16)
    store.publish(staged, location)
    return location


def test_another_process_with_an_empty_data_dir_loads_the_same_model(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    trainer_side = ArtifactStore.of(settings_of(tmp_path / "trainer", s3_service, bucket))
    version = arn(unique)
    location = published_hrnn(tmp_path, trainer_side, version)
    listed = s3_service.client().list_objects_v2(Bucket=bucket, Prefix=location + "/")
    keys = {o["Key"] for o in listed["Contents"]}
    manifest = ArtifactManifest.model_validate_json(
        s3_service.client().get_object(Bucket=bucket, Key=f"{location}/manifest.json")["Body"].read())
    assert keys == {f"{location}/{name}" for name in [*manifest.checksums, "manifest.json"]}
    assert set(manifest.files.values()) <= set(manifest.checksums)
    assert not (tmp_path / "trainer" / location).exists()  # not in the data dir: in the bucket (and cache)

    server_dir = tmp_path / "server"
    models = Models(server_dir, settings_of(server_dir, s3_service, bucket))
    served = models.get(version, location)
    cached = server_dir / "cache" / location
    for name, digest in manifest.checksums.items():
        assert hashlib.sha256((cached / name).read_bytes()).hexdigest() == digest
    original = load(version, trainer_side.local(location))
    assert served.item_ids == original.item_ids
    for user in ("u3", "u150", "someone-new"):
        np.testing.assert_array_equal(served.user_scores(served.history(user, [])),
                                      original.user_scores(original.history(user, [])))

    # a restart (a new store on the same data dir) reuses the verified cache: the bucket is not read
    for key in keys:
        s3_service.client().delete_object(Bucket=bucket, Key=key)
    assert ArtifactStore.of(settings_of(server_dir, s3_service, bucket)).local(location) == cached
    with pytest.raises(ArtifactMissing):  # ... while a data dir without it finds nothing
        ArtifactStore.of(settings_of(tmp_path / "third", s3_service, bucket)).local(location)


def test_a_changed_object_is_refused_with_its_name_and_never_cached(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    location = published_hrnn(tmp_path, ArtifactStore.of(settings_of(tmp_path / "t", s3_service, bucket)),
                              arn(unique))
    key = f"{location}/popularity.npy"
    body = bytearray(s3_service.client().get_object(Bucket=bucket, Key=key)["Body"].read())
    body[-1] ^= 0xFF  # one flipped byte
    s3_service.client().put_object(Bucket=bucket, Key=key, Body=bytes(body))

    reader = ArtifactStore.of(settings_of(tmp_path / "reader", s3_service, bucket))
    for _ in range(2):  # refused again on the next try: nothing of it was kept
        with pytest.raises(ArtifactCorrupt, match=r"popularity.npy does not match its checksum"):
            reader.local(location)
        cache = tmp_path / "reader" / "cache" / location
        assert not (cache / "popularity.npy").exists() and not (cache / "manifest.json").exists()
        assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_without_its_manifest_there_is_no_artifact_yet(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    reader = ArtifactStore.of(settings_of(tmp_path / "reader", s3_service, bucket))
    never = artifact_location(arn(unique))
    assert not reader.exists(never)
    with pytest.raises(ArtifactMissing, match="no manifest"):
        reader.local(never)
    # every other file uploaded, the manifest not (a trainer killed mid-upload)
    location = published_hrnn(tmp_path, ArtifactStore.of(settings_of(tmp_path / "t", s3_service, bucket)),
                              arn(unique))
    manifest = s3_service.client().get_object(Bucket=bucket, Key=f"{location}/manifest.json")["Body"].read()
    s3_service.client().delete_object(Bucket=bucket, Key=f"{location}/manifest.json")
    assert not reader.exists(location)
    with pytest.raises(ArtifactMissing, match="no manifest"):
        reader.local(location)
    assert not (tmp_path / "reader" / "cache" / location / "manifest.json").exists()
    # the other way round: a manifest naming a file the bucket lost is refused, not "unreachable"
    s3_service.client().put_object(Bucket=bucket, Key=f"{location}/manifest.json", Body=manifest)
    s3_service.client().delete_object(Bucket=bucket, Key=f"{location}/user_ids.json")
    with pytest.raises(ArtifactCorrupt, match="names user_ids.json, which the bucket does not hold"):
        reader.local(location)
    assert not (tmp_path / "reader" / "cache" / location / "manifest.json").exists()


def test_two_processes_filling_one_cache_at_once_both_get_whole_files(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    location = published_hrnn(tmp_path, ArtifactStore.of(settings_of(tmp_path / "t", s3_service, bucket)),
                              arn(unique))
    shared = tmp_path / "shared"
    stores = [ArtifactStore.of(settings_of(shared, s3_service, bucket)) for _ in range(4)]
    start, got, failed = threading.Barrier(len(stores)), [], []

    def fill(store: ArtifactStore) -> None:
        start.wait()
        try:
            got.append(store.local(location))
        except Exception as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=fill, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failed and len(got) == len(stores)
    cached = shared / "cache" / location
    manifest = ArtifactManifest.model_validate_json((cached / "manifest.json").read_text())
    for name, digest in manifest.checksums.items():
        assert hashlib.sha256((cached / name).read_bytes()).hexdigest() == digest
    assert not list(cached.glob(".*.part"))


def test_a_full_cache_lets_the_least_recently_used_artifact_go(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    """A long-lived API process deploys version after version: its cache keeps to its budget
    (OPZ_ARTIFACT_CACHE_GB), dropping what it used longest ago, and loads that one again if asked."""
    trainer = ArtifactStore.of(settings_of(tmp_path / "t", s3_service, bucket))
    first, second, third = (published_hrnn(tmp_path, trainer, arn(unique)) for _ in range(3))
    reader = tmp_path / "reader"
    one = ArtifactStore.of(settings_of(reader, s3_service, bucket))
    size = sum(f.stat().st_size for f in one.local(first).rglob("*") if f.is_file())
    one.cache_bytes = int(size * 2.5)  # room for two
    one.local(second)
    os.utime(one.cache_dir(first) / "manifest.json", (1, 1))  # the first is the least recently used
    one.local(third)
    assert not one.cache_dir(first).exists(), "evicted: over the budget, and used longest ago"
    assert all((one.cache_dir(kept) / "manifest.json").is_file() for kept in (second, third))
    again = one.local(first)  # asked for again: downloaded and verified again, another one goes
    assert (again / "manifest.json").is_file()
    assert sum((one.cache_dir(loc) / "manifest.json").is_file() for loc in (first, second, third)) == 2


async def test_a_trained_version_is_in_the_bucket_and_another_process_serves_it(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    """The trainer (Popularity-Count on archived events) publishes to the bucket; an API process
    on another data dir serves it from there."""
    trainer_dir = tmp_path / "trainer"
    await archived(trainer_dir, shift=0)
    version = arn(unique)
    out = await trained(trainer_dir, s3_service, bucket, version, parent=None)
    assert out["artifact"] == artifact_location(version)
    head = s3_service.client().head_object(Bucket=bucket, Key=f"{out['artifact']}/manifest.json")
    assert head["ContentLength"] > 0 and not (trainer_dir / out["artifact"]).exists()

    server_dir = tmp_path / "server"
    served = Models(server_dir, settings_of(server_dir, s3_service, bucket)).get(version, out["artifact"])
    model = load(version, trainer_dir / "cache" / out["artifact"])
    assert served.item_ids == model.item_ids
    np.testing.assert_array_equal(served.popularity, model.popularity)

    # an UPDATE by a trainer on yet another host reads its parent from the bucket: item codes kept
    other = tmp_path / "other-trainer"
    await archived(other, shift=3)
    update = await trained(other, s3_service, bucket, arn(unique), parent=out["artifact"])
    parent_items = json.loads((other / "cache" / out["artifact"] / "item_ids.json").read_text())
    child_items = json.loads((other / "cache" / update["artifact"] / "item_ids.json").read_text())
    assert child_items[:len(parent_items)] == parent_items and len(child_items) > len(parent_items)


async def archived(data_dir: Path, shift: int) -> None:
    """30 users' clicks in the data dir's archive (items i<shift>..i<shift + 8>)."""
    archive = Archive(data_dir / "archive")
    await archive.start()
    await archive.add([Event(event_id=f"e{u}-{i}", dataset_group="shop", tracking_id="t", user_id=f"u{u}",
                             session_id=f"s{u}", event_type="click", item_id=f"i{shift + (u + i) % 9}",
                             sent_at=1_700_000_000.0 + u * 10 + i, received_at=0.0)
                       for u in range(30) for i in range(4)])
    await archive.close()


async def trained(data_dir: Path, s3: S3Service, bucket: str, version: str,
                  parent: str | None) -> dict[str, Any]:
    """Popularity-Count trained by a trainer on `data_dir` that publishes to the bucket."""
    trainer = Trainer(data_dir, 10, ArtifactStore.of(settings_of(data_dir, s3, bucket)))
    return await asyncio.to_thread(
        trainer.train, version_arn=version, dataset_group="shop", recipe_arn=POPULARITY, hyperparameters={},
        event_type=None, event_value_threshold=None, parent=parent, progress=lambda **_: None)


async def test_a_stream_worker_loads_the_published_live_model_from_the_bucket(
        tmp_path: Path, s3_service: S3Service, bucket: str, unique: str) -> None:
    version = arn(unique)
    location = published_hrnn(tmp_path, ArtifactStore.of(settings_of(tmp_path / "t", s3_service, bucket)),
                              version)
    worker_dir = tmp_path / "worker"
    store = sqlite_stores(worker_dir / "sessions.db")
    key, s3 = f"{location}/item_embeddings.npy", s3_service.client()
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=good[:-1] + bytes([good[-1] ^ 0xFF]))
    await store.start()
    try:
        await store.models.publish("shop", version, location, 1.0)
        artifacts = ArtifactStore.of(settings_of(worker_dir, s3_service, bucket))
        damaged = LiveModels(worker_dir, store.models, artifacts)
        await damaged.refresh()
        assert damaged("shop") is None  # refused: states wait, as without a model
        s3.put_object(Bucket=bucket, Key=key, Body=good)
        await damaged.refresh()
        assert damaged("shop") is None  # a corrupt artifact is not downloaded again every second

        live = LiveModels(worker_dir, store.models, artifacts)
        await live.refresh()  # a restarted worker, once the object is whole again
        model = live("shop")
        assert model is not None and model.model == version
        assert (worker_dir / "cache" / location / "manifest.json").is_file()
    finally:
        await store.close()


def test_an_unreachable_store_says_so_without_its_details(tmp_path: Path, unique: str) -> None:
    reader = ArtifactStore(tmp_path, "opz-nowhere", "http://127.0.0.1:9")
    with pytest.raises(ArtifactUnreachable, match=r"could not read artifact artifacts/x/v manifest.json: \w"):
        reader.local("artifacts/x/v")
