"""Distributed mode sharing no disk: two API processes, a stream worker and a trainer, each with
a data dir of its own, meet only in Kafka, Redis, PostgreSQL and the bucket.

The whole boto3 workflow runs across them: an import from the bucket (run by whichever API
claims the job), training in the trainer process on what the import and PutEvents stored,
a campaign served by the other API, an export that holds the PutEvents rows, and a dataset
group deletion that leaves nothing behind in the bucket. A kill -9 of any one process loses
nothing: of a stream worker or an API process mid-stream, every accepted event is archived
exactly once; of the trainer mid-epoch, the next trainer trains the version to a servable end.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import S3Service, Server, Trainer, Worker, free_port, send_events, sent_item, stored_event_ids
from test_training import INTERACTIONS, RECIPE, ROLE, dataset_group, slice_of_ml100k, train, wait

from kernel.archive_parts import PartsArchive
from kernel.object_store import Bucket
from training.import_client import Control

WINDOW_S = "0.5"  # the archive writer's window: events reach training within about this


@pytest.fixture
def env(unique: str, kafka_bootstrap: str, redis_url: str, fresh_database: str, s3_service: S3Service,
        bucket: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "OPZ_REDIS_URL": redis_url,
                "OPZ_REDIS_PREFIX": unique, "OPZ_STREAM_APP_ID": f"{unique}-stream",
                "OPZ_STREAM_DATASET_GROUPS": f"{unique}.*", "OPZ_DATABASE_URL": fresh_database,
                "OPZ_S3_BUCKET": bucket, "OPZ_S3_ENDPOINT_URL": s3_service.endpoint,
                "OPZ_S3_ROOTS": f"s3://{bucket}/files", "OPZ_ARCHIVE_WINDOW_S": WINDOW_S,
                "OPZ_TRAIN_IN_SERVER": "false", "OPZ_MIN_TRAINING_INTERACTIONS": "100",
                "AWS_ACCESS_KEY_ID": s3_service.access_key, "AWS_SECRET_ACCESS_KEY": s3_service.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):  # this test reads too
        monkeypatch.setenv(name, settings[name])
    return settings


class Hosts:
    """Every process on a 'host' of its own: tmp_path/<host>/data."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp_path, env
        self.running: list[Any] = []

    def data_dir(self, host: str) -> Path:
        (self.tmp / host).mkdir(exist_ok=True)
        return self.tmp / host / "data"

    def server(self, host: str) -> Server:
        return self._started(Server(self.data_dir(host), env=self.env).start())

    def worker(self, host: str) -> Worker:
        data = self.data_dir(host)
        return self._started(Worker(data.parent, {**self.env, "OPZ_DATA_DIR": str(data),
                                                  "OPZ_METRICS_PORT": str(free_port())}).start())

    def trainer(self, host: str) -> Trainer:
        return self._started(Trainer(self.data_dir(host), env=self.env, schedule=False).start())

    def _started(self, process: Any) -> Any:
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in self.running:
            process.stop()


@pytest.fixture
def hosts(tmp_path: Path, env: dict[str, str]) -> Iterator[Hosts]:
    h = Hosts(tmp_path, env)
    try:
        yield h
    finally:
        h.stop()


def archived_ids(bucket: str, endpoint: str, group: str) -> list[str]:
    """Every event id the archive's parts hold, duplicates included (the raw rows, not a read)."""
    return stored_event_ids(PartsArchive(Bucket(bucket, "archive/", endpoint)), group)


def wait_archived(bucket: str, endpoint: str, group: str, expected: int, timeout: float = 120) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(ids := archived_ids(bucket, endpoint, group)) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return ids


def keys(s3: S3Service, bucket: str, prefix: str) -> list[str]:
    pages = s3.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_the_workflow_runs_on_processes_that_share_no_disk(
        hosts: Hosts, env: dict[str, str], s3_service: S3Service, bucket: str, unique: str,
        tmp_path: Path) -> None:
    s3 = s3_service.client()
    csv = slice_of_ml100k(tmp_path / "ml.csv", 3_000)
    s3.upload_file(str(csv), bucket, "files/ml.csv")
    first, second = hosts.server("a"), hosts.server("b")
    hosts.worker("w")
    hosts.trainer("t")
    control = first.client("personalize")

    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    schema = control.create_schema(name=unique, schema=INTERACTIONS)["schemaArn"]
    dataset = control.create_dataset(name=unique, schemaArn=schema, datasetGroupArn=group,
                                     datasetType="INTERACTIONS")["datasetArn"]
    job = control.create_dataset_import_job(jobName=unique, datasetArn=dataset, roleArn=ROLE, dataSource={
        "dataLocation": f"s3://{bucket}/files/ml.csv"})["datasetImportJobArn"]
    imported = wait(lambda: control.describe_dataset_import_job(datasetImportJobArn=job)["datasetImportJob"])
    assert imported["status"] == "ACTIVE", imported.get("failureReason")
    assert f"datasets/{unique}/INTERACTIONS/manifest.json" in keys(s3_service, bucket, "datasets/")

    # PutEvents on one API, through Kafka to the worker's archive writer, into the bucket: a new
    # item clicked by 150 users, more than any item of the slice
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
    accepted = asyncio.run(send_events([first.url, second.url], tracker, users=150, per_user=10,
                                       prefix="fan"))
    assert len(wait_archived(bucket, env["OPZ_S3_ENDPOINT_URL"], unique, len(accepted))) == len(accepted)

    # the trainer process trains on the bucket's dataset and archive; the other API serves it
    solution = control.create_solution(name=unique, datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = control.create_campaign(name=unique, solutionVersionArn=version["solutionVersionArn"])[
        "campaignArn"]
    other = second.client("personalize")
    assert wait(lambda: other.describe_campaign(campaignArn=campaign)["campaign"])["status"] == "ACTIVE"
    top = second.client("personalize-runtime").get_recommendations(campaignArn=campaign, userId="nobody",
                                                                   numResults=10)["itemList"]
    assert {item["itemId"] for item in top} == {sent_item(k) for k in range(10)}, top

    # an export through the other API holds the PutEvents rows beside the imported ones
    export = other.create_dataset_export_job(
        jobName=unique, datasetArn=dataset, roleArn=ROLE, ingestionMode="PUT",
        jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/files/out/"}})["datasetExportJobArn"]
    done = wait(lambda: other.describe_dataset_export_job(datasetExportJobArn=export)["datasetExportJob"])
    assert done["status"] == "ACTIVE", done.get("failureReason")
    exported = s3.get_object(Bucket=bucket, Key=f"files/out/{unique}/part-00000.csv")["Body"].read().decode()
    assert len(exported.strip().splitlines()) == len(accepted) + 1  # the header

    # no process wrote datasets, archive or artifacts to its own disk: only a cache
    for host in ("a", "b", "w", "t"):
        data = hosts.data_dir(host)
        held = {p.name for p in data.iterdir()} if data.exists() else set()
        assert not held & {"datasets", "archive", "artifacts", "control.db", "events.db"}, (host, held)

    control.delete_campaign(campaignArn=campaign)
    deadline = time.monotonic() + 120
    while True:
        try:
            control.delete_solution(solutionArn=solution)
            break
        except control.exceptions.ResourceInUseException:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    control.delete_event_tracker(eventTrackerArn=control.list_event_trackers(
        datasetGroupArn=group)["eventTrackers"][0]["eventTrackerArn"])
    control.delete_dataset(datasetArn=dataset)
    control.delete_dataset_group(datasetGroupArn=group)
    deadline = time.monotonic() + 120
    while keys(s3_service, bucket, f"datasets/{unique}/") + keys(s3_service, bucket, f"archive/{unique}/"):
        assert time.monotonic() < deadline, "the deleted group's data stayed in the bucket"
        time.sleep(0.5)


def test_a_killed_worker_loses_no_event_and_stores_none_twice(
        hosts: Hosts, env: dict[str, str], unique: str) -> None:
    server = hosts.server("a")
    control = server.client("personalize")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
    victim = hosts.worker("w1")
    before = asyncio.run(send_events(server.url, tracker, users=50, per_user=20, prefix="a"))
    assert len(wait_archived(env["OPZ_S3_BUCKET"], env["OPZ_S3_ENDPOINT_URL"], unique, 1)) >= 1
    victim.kill()  # mid-window: what it held is not in the archive yet, nor past its offset
    during = asyncio.run(send_events(server.url, tracker, users=50, per_user=20, prefix="b"))
    hosts.worker("w2")
    accepted = before + during
    wait_archived(env["OPZ_S3_BUCKET"], env["OPZ_S3_ENDPOINT_URL"], unique, len(accepted))
    time.sleep(3 * float(WINDOW_S))  # anything stored twice would have landed by now
    ids = archived_ids(env["OPZ_S3_BUCKET"], env["OPZ_S3_ENDPOINT_URL"], unique)
    assert sorted(ids) == sorted(accepted), (len(ids), len(accepted))


def accepted_by(server: Server) -> float:
    """The events an API process has stored (its opz_api_events_accepted_total)."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return next((s.value for f in text_string_to_metric_families(text) for s in f.samples
                 if s.name == "opz_api_events_accepted_total"), 0.0)


def test_a_killed_api_loses_no_accepted_event(hosts: Hosts, env: dict[str, str], unique: str) -> None:
    """Events reach the API processes behind a load balancer; one is killed mid-stream. Every
    event a client got 200 for is archived once: those the dead process had stored in Kafka
    before it could answer come again through the other one (a retry), and are stored once."""
    victim, survivor = hosts.server("a"), hosts.server("b")
    hosts.worker("w")
    control = survivor.client("personalize")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sending = pool.submit(asyncio.run, send_events([victim.url, survivor.url], tracker, users=200,
                                                       per_user=50, concurrency=8))
        while accepted_by(victim) < 500:  # mid-stream: the victim has stored some and has more coming
            assert not sending.done(), "all sent before the kill: nothing was in flight"
            time.sleep(0.02)
        victim.kill()
        accepted = sending.result(timeout=300)
    wait_archived(env["OPZ_S3_BUCKET"], env["OPZ_S3_ENDPOINT_URL"], unique, len(accepted))
    time.sleep(3 * float(WINDOW_S))  # anything stored twice would have landed by now
    ids = archived_ids(env["OPZ_S3_BUCKET"], env["OPZ_S3_ENDPOINT_URL"], unique)
    assert sorted(ids) == sorted(accepted), (len(ids), len(accepted))


def test_a_killed_trainer_s_version_is_trained_by_the_next_one(
        hosts: Hosts, unique: str) -> None:
    """A trainer killed mid-epoch: its lease ends with it, the next trainer (another host) claims the
    version, trains it from the start and publishes a complete artifact, which the API serves."""
    server = hosts.server("a")
    victim = hosts.trainer("t1")
    control = server.client("personalize")
    csv = slice_of_ml100k(hosts.data_dir("a").parent / "ml.csv", 10_000)  # a file on the API's host
    group = dataset_group(control, unique, csv)
    solution = control.create_solution(name=unique, datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
                                       solutionConfig={"algorithmHyperParameters": {
                                           "epochs": "40", "hidden_dimension": "32"}})["solutionArn"]
    arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]

    def described() -> dict[str, Any]:  # as JSON: boto3 drops the progress, which its model lacks
        return Control(server.url)("DescribeSolutionVersion", solutionVersionArn=arn)["solutionVersion"]

    deadline = time.monotonic() + 120
    while " epoch " not in (seen := described()).get("progress", {}).get("message", ""):
        assert time.monotonic() < deadline and seen["status"] != "ACTIVE", seen
        time.sleep(0.05)
    victim.kill()
    assert described()["status"] == "CREATE IN_PROGRESS"
    hosts.trainer("t2")
    done = wait(described, 300)
    assert done["status"] == "ACTIVE", done.get("failureReason")
    assert len(done["trainingCurve"]) == 40  # trained from the start, every epoch
    campaign = control.create_campaign(name=unique, solutionVersionArn=arn)["campaignArn"]
    assert wait(lambda: control.describe_campaign(campaignArn=campaign)["campaign"])["status"] == "ACTIVE"
    top = server.client("personalize-runtime").get_recommendations(campaignArn=campaign, userId="259")
    assert len(top["itemList"]) == 25
