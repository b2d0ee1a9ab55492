"""Artifact locations, object keys and checksum checks: the pure parts of kernel/artifact_store.py.

The bucket side runs against the real S3-compatible store in
tests/integration/test_artifact_store.py; here, what decides a key, refuses a manifest's file
name and refuses a file whose content changed, plus the embedded (data dir) mode.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kernel.artifact_store import (
    ArtifactCorrupt,
    ArtifactMissing,
    ArtifactStore,
    artifact_location,
    check_digest,
    checked_name,
    checksums_of,
    evictable,
    object_key,
    with_checksums,
)
from kernel.contract import ArtifactManifest
from kernel.settings import Settings

ARN = "arn:aws:personalize:us-east-1:000000000000:solution/movies/3f2a9c"


def manifest(**checksums: str) -> ArtifactManifest:
    return ArtifactManifest(solution_version_arn=ARN, recipe="aws-popularity-count", created_at=1.0,
                            files={"popularity": "popularity.npy"}, checksums=checksums)


def test_a_version_has_one_location_for_the_data_dir_and_the_bucket() -> None:
    assert artifact_location(ARN) == "artifacts/movies/3f2a9c"
    assert object_key("artifacts/movies/3f2a9c", "popularity.npy") == "artifacts/movies/3f2a9c/popularity.npy"
    assert object_key("artifacts/movies/3f2a9c/", "manifest.json") == "artifacts/movies/3f2a9c/manifest.json"


@pytest.mark.parametrize("name", ["", "../other/popularity.npy", "/etc/passwd", "a/../../b", "./x", "a//b",
                                  "a\\b", "manifest.json"])
def test_a_manifest_cannot_name_a_file_outside_its_artifact(name: str) -> None:
    with pytest.raises(ArtifactCorrupt, match="unusable file"):
        checked_name(name)


def test_nested_file_names_are_kept() -> None:
    assert checked_name("hrnn/step.onnx") == "hrnn/step.onnx"


def test_a_manifest_without_checksums_is_refused_not_trusted() -> None:
    with pytest.raises(ArtifactCorrupt, match="records no checksums"):
        checksums_of(manifest(), "artifacts/movies/3f2a9c")
    assert checksums_of(manifest(**{"popularity.npy": "ab"}), "l") == {"popularity.npy": "ab"}


def test_a_file_that_changed_is_refused_naming_it_and_both_digests() -> None:
    check_digest("artifacts/m/v", "popularity.npy", "a" * 64, "a" * 64)
    with pytest.raises(ArtifactCorrupt, match=r"popularity.npy does not match its checksum .*not cached"):
        check_digest("artifacts/m/v", "popularity.npy", "a" * 64, "b" * 64)


def test_checksums_are_recorded_in_the_manifest_and_old_manifests_still_read() -> None:
    text = with_checksums(manifest().model_dump_json(), {"b.npy": "2", "a.npy": "1"})
    assert list(json.loads(text)["checksums"]) == ["a.npy", "b.npy"]
    old = manifest().model_dump(exclude={"checksums"})  # written before checksums were kept
    assert ArtifactManifest.model_validate(old).checksums == {}


def test_the_bucket_setting_is_checked_at_start() -> None:
    with pytest.raises(ValidationError, match="OPZ_S3_BUCKET"):
        Settings(s3_bucket="Not_A_Bucket")
    assert Settings(s3_bucket="opz-models").s3_bucket == "opz-models"
    assert Settings().s3_bucket is None  # artifacts in the data dir


def test_embedded_mode_publishes_into_the_data_dir_with_checksums(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    location = artifact_location(ARN)
    with pytest.raises(ArtifactMissing):
        store.local(location)
    staged = store.staging(location)
    (staged / "popularity.npy").write_bytes(b"counts")
    (staged / "manifest.json").write_text(manifest().model_dump_json())
    store.publish(staged, location)
    assert store.local(location) == tmp_path / location and store.exists(location)
    recorded = ArtifactManifest.model_validate_json((tmp_path / location / "manifest.json").read_text())
    assert recorded.checksums == {"popularity.npy": hashlib.sha256(b"counts").hexdigest()}
    assert not staged.exists()
    store.delete(location)
    assert not store.exists(location) and not (tmp_path / "artifacts" / "movies").exists()


def test_the_least_recently_used_artifacts_go_until_the_rest_fit_never_the_one_loading() -> None:
    cached = [("artifacts/s/new", 30.0, 400), ("artifacts/s/old", 10.0, 300), ("artifacts/s/mid", 20.0, 300)]
    assert evictable(cached, budget=1_000, keep="artifacts/s/new") == []
    assert evictable(cached, budget=700, keep="artifacts/s/new") == ["artifacts/s/old"]
    assert evictable(cached, budget=400, keep="artifacts/s/new") == ["artifacts/s/old", "artifacts/s/mid"]
    # the one loading stays even when it alone is over the budget
    assert evictable(cached, budget=100, keep="artifacts/s/new") == ["artifacts/s/old", "artifacts/s/mid"]
    assert evictable(cached, budget=600, keep="artifacts/s/old") == ["artifacts/s/mid", "artifacts/s/new"]
