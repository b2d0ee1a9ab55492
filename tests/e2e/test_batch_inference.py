"""Batch inference jobs through unchanged boto3: a file of users in, a file of recommendations
out, the same ones GetRecommendations gives; bad lines fail alone; a killed server's job goes
on from its last checkpoint when the server is back."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from support import Server
from test_training import RECIPE, ROLE, dataset_group, slice_of_ml100k, train, wait

SMALL_HRNN = {"algorithmHyperParameters": {"epochs": "1", "hidden_dimension": "32"}}
LINES = 300_000  # enough that a checkpoint comes before the end on a fast machine


class Shop:
    """ml-100k's first 5,000 ratings, an HRNN, a SIMS and a personalized-ranking version."""

    def __init__(self, server: Server, tmp: Path) -> None:
        self.server, self.tmp, self.control = server, tmp, server.client("personalize")
        self.group = dataset_group(self.control, "batch", slice_of_ml100k(tmp / "ml.csv", 5000))
        recipes = ("aws-hrnn", "aws-sims", "aws-personalized-ranking")
        self.versions = {recipe: self.trained(recipe) for recipe in recipes}
        self.campaign = self.control.create_campaign(
            name="batch-check", solutionVersionArn=self.versions["aws-hrnn"])["campaignArn"]
        self.runtime = server.client("personalize-runtime")

    def trained(self, recipe: str) -> str:
        solution = self.control.create_solution(
            name=recipe, datasetGroupArn=self.group, recipeArn=RECIPE + recipe,
            solutionConfig={} if recipe == "aws-sims" else SMALL_HRNN)["solutionArn"]
        version = train(self.control, solution)
        assert version["status"] == "ACTIVE", version.get("failureReason")
        return version["solutionVersionArn"]

    def users(self) -> list[str]:
        rows = (self.tmp / "ml.csv").read_text().splitlines()[1:]
        return list(dict.fromkeys(r.split(",")[0] for r in rows))

    def run(self, name: str, recipe: str, lines: list[str], **extra: Any) -> list[dict[str, Any]]:
        """A job over `lines`; its output, parsed, once it is ACTIVE."""
        source = self.tmp / f"{name}.json"
        source.write_text("\n".join(lines) + "\n")
        arn = self.create(name, recipe, source, **extra)
        job = wait(lambda: self.control.describe_batch_inference_job(
            batchInferenceJobArn=arn)["batchInferenceJob"], timeout=300)
        assert job["status"] == "ACTIVE", job.get("failureReason")
        return [json.loads(x) for x in (self.tmp / "out" / f"{name}.json.out").read_text().splitlines()]

    def create(self, name: str, recipe: str, source: Path, **extra: Any) -> str:
        return self.control.create_batch_inference_job(
            jobName=name, solutionVersionArn=self.versions[recipe], roleArn=ROLE,
            jobInput={"s3DataSource": {"path": str(source)}},
            jobOutput={"s3DataDestination": {"path": str(self.tmp / "out")}}, **extra)["batchInferenceJobArn"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("batch")
    shop = Shop(Server(tmp / "data").start(), tmp)
    try:
        yield shop
    finally:
        shop.server.stop()  # the one a test may have started in place of a killed one


def test_a_file_of_users_gets_what_get_recommendations_gives_them(shop: Shop) -> None:
    users = shop.users()[:40]
    lines = [json.dumps({"userId": u}) for u in users] + [
        json.dumps({"userId": "never-seen"}), "{not json", json.dumps({"itemId": "1"}), "", json.dumps(["u"])]
    out = shop.run("users", "aws-hrnn", lines, numResults=10)
    assert [o["input"] for o in out[:41]] == [{"userId": u} for u in [*users, "never-seen"]]
    assert len(out) == len(lines) - 1  # a blank line is no request

    for user, line in zip([*users, "never-seen"], out, strict=False):
        live = shop.runtime.get_recommendations(campaignArn=shop.campaign, userId=user,
                                                numResults=10)["itemList"]
        assert line["error"] is None and line["output"]["recommendedItems"] == [i["itemId"] for i in live]
        assert line["output"]["scores"] == pytest.approx([i["score"] for i in live], abs=2e-7)

    errors = [o["error"] for o in out[41:]]
    assert all(o["output"] is None for o in out[41:])
    assert "JSON object" in errors[0] and "userId" in errors[1] and "JSON object" in errors[2]


def test_related_items_and_ranking_read_their_own_lines(shop: Shop) -> None:
    similar = shop.run("items", "aws-sims", [json.dumps({"itemId": "50"}), json.dumps({"userId": "1"})],
                       numResults=5)
    neighbours = similar[0]["output"]["recommendedItems"]
    assert len(neighbours) == 5 and "50" not in neighbours
    assert "itemId" in similar[1]["error"]

    user = shop.users()[0]
    asked = ["50", "181", "258", "not-an-item"]
    ranked = shop.run("ranking", "aws-personalized-ranking", [
        json.dumps({"userId": user, "itemList": asked}), json.dumps({"userId": user})])
    assert sorted(ranked[0]["output"]["recommendedItems"]) == sorted(asked)
    assert ranked[0]["output"]["recommendedItems"][-1] == "not-an-item"  # the model does not know it
    assert "itemList" in ranked[1]["error"]


def test_a_filter_with_values_per_line(shop: Shop) -> None:
    filter_arn = shop.control.create_filter(
        name="not-rated", datasetGroupArn=shop.group,
        filterExpression="EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ($TYPES)")["filterArn"]
    users, values = shop.users()[:5], {"TYPES": '"rating"'}
    out = shop.run("filtered", "aws-hrnn", [json.dumps({"userId": u, "filterValues": values}) for u in users]
                   + [json.dumps({"userId": users[0]})], numResults=5, filterArn=filter_arn)
    for user, line in zip(users, out, strict=False):
        live = shop.runtime.get_recommendations(campaignArn=shop.campaign, userId=user, numResults=5,
                                                filterArn=filter_arn, filterValues=values)["itemList"]
        assert line["output"]["recommendedItems"] == [i["itemId"] for i in live]
    rated = {r.split(",")[1] for r in (shop.tmp / "ml.csv").read_text().splitlines()[1:]
             if r.split(",")[0] == users[0]}
    assert rated and not rated & set(out[0]["output"]["recommendedItems"])
    # an EXCLUDE whose value a line omits takes no part, as in GetRecommendations
    unfiltered = shop.runtime.get_recommendations(campaignArn=shop.campaign, userId=users[0], numResults=5,
                                                  filterArn=filter_arn)["itemList"]
    assert out[-1]["output"]["recommendedItems"] == [i["itemId"] for i in unfiltered]


def test_create_refuses_what_personalize_refuses(shop: Shop) -> None:
    source = shop.tmp / "one.json"
    source.write_text('{"userId": "1"}\n')

    def refused(code: str, **changes: Any) -> None:
        request = {"jobName": "refused", "solutionVersionArn": shop.versions["aws-hrnn"], "roleArn": ROLE,
                   "jobInput": {"s3DataSource": {"path": str(source)}},
                   "jobOutput": {"s3DataDestination": {"path": str(shop.tmp / "out")}}} | changes
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            shop.control.create_batch_inference_job(**request)
        assert caught.value.response["Error"]["Code"] == code, caught.value.response

    refused("InvalidInputException", numResults=0)
    refused("InvalidInputException", numResults=501)
    refused("InvalidInputException", jobInput={"s3DataSource": {"path": "/etc/passwd"}})
    refused("InvalidInputException", jobOutput={"s3DataDestination": {"path": "file:///tmp"}})
    refused("InvalidInputException", batchInferenceJobMode="THEME_GENERATION")
    refused("ResourceNotFoundException", solutionVersionArn=shop.versions["aws-hrnn"] + "x")
    listed = shop.control.list_batch_inference_jobs(solutionVersionArn=shop.versions["aws-hrnn"])
    assert "refused" not in {j["jobName"] for j in listed["batchInferenceJobs"]}
    assert {"users"} <= {j["jobName"] for j in listed["batchInferenceJobs"]}


def test_a_job_of_a_killed_server_goes_on_from_its_checkpoint(shop: Shop) -> None:
    """Its output holds every line once, in order, though the server died mid-way."""
    users = shop.users()
    lines = [json.dumps({"userId": users[n % len(users)], "n": n}) for n in range(LINES)]
    source = shop.tmp / "many.json"
    source.write_text("\n".join(lines) + "\n")
    arn = shop.create("many", "aws-hrnn", source, numResults=3)

    def raw_job() -> dict[str, Any]:
        return httpx.post(shop.server.url, json={"batchInferenceJobArn": arn}, timeout=10, headers={
            "X-Amz-Target": "AmazonPersonalize.DescribeBatchInferenceJob",
            "Content-Type": "application/x-amz-json-1.1"}).json()["batchInferenceJob"]

    deadline = time.monotonic() + 300
    while not (job := raw_job()).get("progress", {}).get("linesDone"):
        assert job["status"] != "ACTIVE", "the job ended before a checkpoint: give it more lines"
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    shop.server.kill()
    shop.server = Server(shop.server.data_dir, env=dict(shop.server.env)).start()
    shop.control = control = shop.server.client("personalize")
    shop.runtime = shop.server.client("personalize-runtime")
    job = wait(lambda: control.describe_batch_inference_job(batchInferenceJobArn=arn)["batchInferenceJob"],
               timeout=600)
    assert job["status"] == "ACTIVE", job.get("failureReason")
    out = (shop.tmp / "out" / "many.json.out").read_text().splitlines()
    assert [json.loads(x)["input"]["n"] for x in out] == list(range(LINES))
    assert "going on from line" in shop.server.output()  # not from the start
