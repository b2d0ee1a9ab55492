"""User segments through unchanged boto3: aws-item-affinity and aws-item-attribute-affinity
trained as solutions, then batch segment jobs answering, per item or per item attributes, the
users most likely to interact with them: the ones the trained model's own tables rank first."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import numpy as np
import pytest
from support import DATASETS, Server
from test_training import RECIPE, ROLE, dataset_group, import_dataset, slice_of_ml100k, train, wait

SMALL_HRNN = {"algorithmHyperParameters": {"epochs": "1", "hidden_dimension": "32"}}
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "TITLE", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    {"name": "RELEASE_YEAR", "type": ["null", "int"]},
    {"name": "CREATION_TIMESTAMP", "type": ["null", "long"]}]})


class Shop:
    def __init__(self, server: Server, tmp: Path) -> None:
        self.server, self.tmp, self.control = server, tmp, server.client("personalize")
        self.group = dataset_group(self.control, "segments", slice_of_ml100k(tmp / "ml.csv", 5000))
        (tmp / "items.csv").write_bytes((DATASETS / "ml-100k" / "items.csv").read_bytes())
        import_dataset(self.control, self.group, "segments-items", "ITEMS", ITEMS, tmp / "items.csv")
        self.versions = {r: self.trained(r) for r in ("aws-item-affinity", "aws-item-attribute-affinity")}

    def trained(self, recipe: str) -> str:
        solution = self.control.create_solution(name=recipe, datasetGroupArn=self.group,
                                                recipeArn=RECIPE + recipe,
                                                solutionConfig=SMALL_HRNN)["solutionArn"]
        version = train(self.control, solution)
        assert version["status"] == "ACTIVE", version.get("failureReason")
        return version["solutionVersionArn"]

    def run(self, name: str, recipe: str, lines: list[str], k: int) -> list[dict[str, Any]]:
        source = self.tmp / f"{name}.json"
        source.write_text("\n".join(lines) + "\n")
        arn = self.control.create_batch_segment_job(
            jobName=name, solutionVersionArn=self.versions[recipe], roleArn=ROLE, numResults=k,
            jobInput={"s3DataSource": {"path": str(source)}},
            jobOutput={"s3DataDestination": {"path": str(self.tmp / "out")}})["batchSegmentJobArn"]
        job = wait(lambda: self.control.describe_batch_segment_job(batchSegmentJobArn=arn)["batchSegmentJob"])
        assert job["status"] == "ACTIVE", job.get("failureReason")
        return [json.loads(x) for x in (self.tmp / "out" / f"{name}.json.out").read_text().splitlines()]

    def oracle(self, recipe: str) -> tuple[Any, list[str], list[str]]:
        """The version's own tables, read from its artifact: each user's log-probability of
        each item as its next, the user ids and the item ids."""
        version = httpx.post(self.server.url, json={"solutionVersionArn": self.versions[recipe]}, headers={
            "X-Amz-Target": "AmazonPersonalize.DescribeSolutionVersion",
            "Content-Type": "application/x-amz-json-1.1"}).json()["solutionVersion"]
        art = self.server.data_dir / version["artifact"]
        manifest = json.loads((art / "manifest.json").read_text())
        states, e, b = (np.load(art / manifest["files"][f])
                        for f in ("user_states", "item_embeddings", "item_bias"))
        logits = states[:, :e.shape[1]].astype(np.float64) @ e.T.astype(np.float64) + b
        peak = logits.max(1, keepdims=True)
        logp = logits - peak - np.log(np.exp(logits - peak).sum(1, keepdims=True))
        ids = [json.loads((art / f"{kind}_ids.json").read_text()) for kind in ("user", "item")]
        return logp, ids[0], ids[1]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    tmp = tmp_path_factory.mktemp("segments")
    server = Server(tmp / "data").start()
    try:
        yield Shop(server, tmp)
    finally:
        server.stop()


def test_an_items_segment_is_the_users_most_likely_to_take_it_next(shop: Shop) -> None:
    logp, users, items = shop.oracle("aws-item-affinity")
    out = shop.run("items", "aws-item-affinity", [json.dumps({"itemId": i}) for i in ("50", "181", "1")]
                   + [json.dumps({"itemId": "not-an-item"}), "{oops", json.dumps({"userId": "1"})], k=10)
    for line, item in zip(out[:3], ("50", "181", "1"), strict=True):
        assert line["input"] == {"itemId": item} and line["error"] is None
        expected = [users[u] for u in np.argsort(-logp[:, items.index(item)], kind="stable")[:10]]
        assert line["output"]["recommendedUsers"] == expected
    assert [x["output"] for x in out[3:]] == [None] * 3
    assert "not-an-item" in out[3]["error"] and "JSON" in out[4]["error"] and "itemId" in out[5]["error"]


def test_an_attribute_segment_is_the_users_most_likely_to_take_such_an_item_next(shop: Shop) -> None:
    logp, users, items = shop.oracle("aws-item-attribute-affinity")
    genres = {r.split(",")[0]: r.rsplit(",", 3)[1].split("|")
              for r in (shop.tmp / "items.csv").read_text().splitlines()[1:]}
    out = shop.run("genres", "aws-item-attribute-affinity", [
        json.dumps({"itemAttributes": 'ITEMS.GENRES = "Comedy"'}),
        json.dumps({"itemAttributes": 'ITEMS.GENRES = "Comedy" AND ITEMS.GENRES = "Romance"'}),
        json.dumps({"itemAttributes": 'ITEMS.GENRES = "No such genre"'}),
        json.dumps({"itemAttributes": "ITEMS.GENRES IN ($G)"}),
        json.dumps({"itemAttributes": "not an expression"})], k=8)
    for line, wanted in zip(out[:2], ({"Comedy"}, {"Comedy", "Romance"}), strict=True):
        codes = [c for c, i in enumerate(items) if wanted <= set(genres.get(i, ()))]
        affinity = np.log(np.exp(logp[:, codes]).sum(1))
        assert line["itemAttributes"].startswith("ITEMS.GENRES") and line["error"] is None
        expected = [users[u] for u in np.argsort(-affinity, kind="stable")[:8]]
        assert line["output"]["recommendedUsers"] == expected
    assert [x["output"] for x in out[2:]] == [None] * 3
    assert "no item" in out[2]["error"] and "values only" in out[3]["error"]
    assert "itemAttributes" in out[4]["error"]


def test_segments_and_recommendations_keep_to_their_own_jobs(shop: Shop) -> None:
    source = shop.tmp / "one.json"
    source.write_text('{"itemId": "50"}\n')
    files = {"roleArn": ROLE, "jobInput": {"s3DataSource": {"path": str(source)}},
             "jobOutput": {"s3DataDestination": {"path": str(shop.tmp / "out")}}}
    group = shop.control.describe_dataset_group(datasetGroupArn=shop.group)["datasetGroup"]["datasetGroupArn"]
    hrnn = shop.control.create_solution(name="hrnn", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
                                        solutionConfig=SMALL_HRNN)["solutionArn"]
    hrnn_version = train(shop.control, hrnn)["solutionVersionArn"]
    flt = shop.control.create_filter(
        name="no-comedy", datasetGroupArn=group,
        filterExpression='EXCLUDE ItemID WHERE Items.GENRES IN ("Comedy")')["filterArn"]
    segmentation = shop.versions["aws-item-affinity"]
    segment, infer = shop.control.create_batch_segment_job, shop.control.create_batch_inference_job
    for call in (
            lambda: segment(jobName="x", solutionVersionArn=hrnn_version, **files),
            lambda: segment(jobName="x", solutionVersionArn=segmentation, filterArn=flt, **files),
            lambda: segment(jobName="x", solutionVersionArn=segmentation, numResults=0, **files),
            lambda: infer(jobName="x", solutionVersionArn=segmentation, **files),
            lambda: shop.control.create_campaign(name="x", solutionVersionArn=segmentation)):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] == "InvalidInputException", caught.value.response
    listed = shop.control.list_batch_segment_jobs(solutionVersionArn=segmentation)["batchSegmentJobs"]
    assert {"items"} <= {j["jobName"] for j in listed} and "x" not in {j["jobName"] for j in listed}
