"""With OPZ_S3_BUCKET, model artifacts live in the bucket: two servers without a shared disk
(the control plane in PostgreSQL, data dirs of their own) train on one and serve on the
other, through boto3 only, against the real S3-compatible store."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import S3Service, Server, two_hosts
from test_training import RECIPE, dataset_group, slice_of_ml100k, train


@pytest.fixture
def servers(tmp_path: Path, fresh_database: str, s3_service: S3Service,
            bucket: str) -> Iterator[tuple[Server, Server]]:
    """A trains (its data dir holds the datasets, which are not in the bucket yet); B only serves."""
    env = {"OPZ_DATABASE_URL": fresh_database, "OPZ_S3_BUCKET": bucket,
           "OPZ_S3_ENDPOINT_URL": s3_service.endpoint, "AWS_ACCESS_KEY_ID": s3_service.access_key,
           "AWS_SECRET_ACCESS_KEY": s3_service.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1", "OPZ_MIN_TRAINING_INTERACTIONS": "100"}
    with two_hosts(tmp_path, env, {**env, "OPZ_TRAIN_IN_SERVER": "false"}) as both:
        yield both


def keys_under(s3: S3Service, bucket: str, prefix: str) -> set[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for o in listed.get("Contents", [])}


def deleted_solution(control: Any, solution: str, timeout: float = 60) -> None:
    """DeleteSolution once its campaign is gone (a campaign deletes asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            control.delete_solution(solutionArn=solution)
            return
        except control.exceptions.ResourceInUseException:
            assert time.monotonic() < deadline, "the campaign was never deleted"
            time.sleep(0.2)


def test_one_server_trains_into_the_bucket_and_another_serves_from_it(
        servers: tuple[Server, Server], s3_service: S3Service, bucket: str, tmp_path: Path,
        unique: str) -> None:
    first, second = servers
    control = first.client("personalize")
    group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "a" / "ml.csv", 3_000))
    solution = control.create_solution(name=unique, datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    version_id = version["solutionVersionArn"].rsplit("/", 1)[1]
    location = f"artifacts/{unique}/{version_id}"
    stored = keys_under(s3_service, bucket, location + "/")
    assert {f"{location}/manifest.json", f"{location}/popularity.npy", f"{location}/item_ids.json"} <= stored
    assert not (first.data_dir / "artifacts").exists(), "the artifact is in the bucket, not the data dir"

    # an object changed in the bucket: B refuses to deploy it, saying which file, and keeps nothing
    key, s3 = f"{location}/popularity.npy", s3_service.client()
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=good[:-1] + bytes([good[-1] ^ 0xFF]))
    other = second.client("personalize")
    refused = "popularity.npy does not match its checksum"
    with pytest.raises(other.exceptions.ResourceInUseException, match=refused):
        other.create_campaign(name=unique, solutionVersionArn=version["solutionVersionArn"])
    assert not (second.data_dir / "cache" / location / "popularity.npy").exists()
    s3.put_object(Bucket=bucket, Key=key, Body=good)

    campaign = control.create_campaign(name=unique, solutionVersionArn=version["solutionVersionArn"])[
        "campaignArn"]
    here = first.client("personalize-runtime").get_recommendations(campaignArn=campaign, userId="1")
    there = second.client("personalize-runtime").get_recommendations(campaignArn=campaign, userId="1")
    assert [i["itemId"] for i in there["itemList"]] == [i["itemId"] for i in here["itemList"]]
    assert len(here["itemList"]) == 25
    assert (second.data_dir / "cache" / location / "manifest.json").is_file()  # downloaded, verified

    control.delete_campaign(campaignArn=campaign)
    deleted_solution(control, solution)
    assert keys_under(s3_service, bucket, f"artifacts/{unique}/") == set()
    assert not (first.data_dir / "cache" / location).exists()
