"""What AWS's sample notebooks do, through boto3 unchanged, gets what Personalize gave them
(issue 17): clicks sent with the item in `properties`, clients configured for a region other
than the server's, ListRecipes by domain, GetSolutionMetrics' names, event tracker names, and
an item-field filter before any item is imported.

One signed server; the notebooks' shop is built by a client configured for ap-southeast-1.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import botocore.exceptions
import httpx
import pytest
from support import Server
from test_training import RECIPE, dataset_group, slice_of_ml100k, train

ACCOUNT = "123456789012"
SINGAPORE = "ap-southeast-1"
USER = "259"  # a user of the ml-100k slice
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True}]})
PERSONALIZE_METRICS = {"coverage", "mean_reciprocal_rank_at_25", *(
    f"{m}_at_{k}" for m in ("normalized_discounted_cumulative_gain", "precision") for k in (5, 10, 25))}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    s = Server(tmp_path_factory.mktemp("notebooks") / "data")
    key = s.create_key(ACCOUNT)
    s.start()
    yield s, key
    s.stop()


def clients(server: Server, key: dict[str, str], region: str) -> SimpleNamespace:
    return SimpleNamespace(control=server.client("personalize", key, region),
                           events=server.client("personalize-events", key, region),
                           runtime=server.client("personalize-runtime", key, region))


@pytest.fixture(scope="module")
def shop(server: tuple[Server, dict[str, str]]) -> SimpleNamespace:
    """The notebooks' flow from a client in ap-southeast-1: interactions, Popularity-Count, a
    campaign and an event tracker."""
    s, key = server
    c = clients(s, key, SINGAPORE)
    interactions = slice_of_ml100k(s.data_dir.parent / "ml.csv", 20_000)  # within its file roots
    group = dataset_group(c.control, "notebook", interactions)
    solution = c.control.create_solution(name="notebook-pop", datasetGroupArn=group,
                                         recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(c.control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = c.control.create_campaign(name="notebook-pop", minProvisionedTPS=1,
                                         solutionVersionArn=version["solutionVersionArn"])["campaignArn"]
    tracker = c.control.create_event_tracker(name="web", datasetGroupArn=group)
    return SimpleNamespace(**vars(c), group=group, solution=solution, version=version["solutionVersionArn"],
                           campaign=campaign, tracker_arn=tracker["eventTrackerArn"],
                           tracking_id=tracker["trackingId"])


def top(shop: SimpleNamespace, **request: Any) -> list[str]:
    return [i["itemId"] for i in shop.runtime.get_recommendations(
        campaignArn=shop.campaign, userId=USER, numResults=10, **request)["itemList"]]


def until(done: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def click(shop: SimpleNamespace, **event: Any) -> None:
    shop.events.put_events(trackingId=shop.tracking_id, userId=USER, sessionId="notebook-session",
                           eventList=[{"eventType": "click", "sentAt": time.time(), **event}])


def test_a_click_with_its_item_in_properties_is_recorded(shop: SimpleNamespace) -> None:
    """getting_started 2 and POC 05 send `'properties': '{"itemId": "270"}'` and no itemId."""
    unclicked = shop.control.create_filter(
        name="unclicked", datasetGroupArn=shop.group,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]
    shown = top(shop, filterArn=unclicked)
    click(shop, properties=json.dumps({"itemId": shown[0]}))
    until(lambda: shown[0] not in top(shop, filterArn=unclicked), "the click in properties was lost")

    shown = top(shop, filterArn=unclicked)  # both given: the event's own itemId is the item
    click(shop, itemId=shown[0], properties=json.dumps({"itemId": shown[1], "numberOfRatings": "12"}))
    until(lambda: shown[0] not in top(shop, filterArn=unclicked), "the click's itemId was lost")
    assert shown[1] in top(shop, filterArn=unclicked)

    with pytest.raises(shop.events.exceptions.InvalidInputException, match="itemId must be an item id"):
        click(shop, properties=json.dumps({"itemId": ""}))


def not_found(call: Callable[[], Any]) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException", caught.value.response


def test_arns_name_the_clients_region_and_the_keys_account(shop: SimpleNamespace) -> None:
    prefix = f"arn:aws:personalize:{SINGAPORE}:{ACCOUNT}:"
    for arn in (shop.group, shop.solution, shop.version, shop.campaign, shop.tracker_arn):
        assert arn.startswith(prefix), arn
    datasets = shop.control.list_datasets(datasetGroupArn=shop.group)["datasets"]
    assert datasets and all(d["datasetArn"].startswith(prefix) for d in datasets)


def test_another_regions_client_finds_none_of_it(server: tuple[Server, dict[str, str]],
                                                 shop: SimpleNamespace) -> None:
    """AWS's resources are regional: another region's endpoint knows none of them."""
    virginia = clients(*server, "us-east-1")
    for probe in (
        lambda: virginia.control.describe_dataset_group(datasetGroupArn=shop.group),
        lambda: virginia.control.list_datasets(datasetGroupArn=shop.group),
        lambda: virginia.control.describe_solution(solutionArn=shop.solution),
        lambda: virginia.control.describe_campaign(campaignArn=shop.campaign),
        lambda: virginia.control.describe_event_tracker(eventTrackerArn=shop.tracker_arn),
        lambda: virginia.runtime.get_recommendations(campaignArn=shop.campaign, userId=USER),
        lambda: virginia.events.put_events(trackingId=shop.tracking_id, sessionId="s", eventList=[
            {"eventType": "click", "itemId": "1", "sentAt": time.time()}]),
    ):
        not_found(probe)
    assert virginia.control.list_dataset_groups()["datasetGroups"] == []
    assert virginia.control.list_campaigns()["campaigns"] == []
    # its data is kept by account and name, so the name stays taken in every region
    with pytest.raises(virginia.control.exceptions.ResourceAlreadyExistsException,
                       match=f"exists in region {SINGAPORE}"):
        virginia.control.create_dataset_group(name="notebook")
    assert [g["datasetGroupArn"] for g in shop.control.list_dataset_groups()["datasetGroups"]] == [shop.group]


def test_an_open_server_names_the_clients_region_else_its_own(tmp_path: Path) -> None:
    s = Server(tmp_path / "data", env={"OPZ_REGION": "eu-west-1"}).start()
    try:
        signed = s.client("personalize", region=SINGAPORE).create_dataset_group(name="a")["datasetGroupArn"]
        assert signed == f"arn:aws:personalize:{SINGAPORE}:000000000000:dataset-group/a"
        unsigned = httpx.post(s.url + "/", json={"name": "b"}, headers={
            "X-Amz-Target": "AmazonPersonalize.CreateDatasetGroup",
            "Content-Type": "application/x-amz-json-1.1"}).json()["datasetGroupArn"]
        assert unsigned == "arn:aws:personalize:eu-west-1:000000000000:dataset-group/b"
    finally:
        s.stop()


def test_list_recipes_by_domain_and_solution_metrics_names(server: tuple[Server, dict[str, str]],
                                                           shop: SimpleNamespace) -> None:
    assert shop.control.list_recipes()["recipes"]
    for domain in ("ECOMMERCE", "VIDEO_ON_DEMAND"):  # that domain's use cases only
        use_cases = shop.control.list_recipes(domain=domain)["recipes"]
        assert len(use_cases) == 5 and {r["domain"] for r in use_cases} == {domain}
    metrics = shop.control.get_solution_metrics(solutionVersionArn=shop.version)["metrics"]
    assert set(metrics) == PERSONALIZE_METRICS

    s, key = server  # the report has the others, through a CLI configured for the shop's region
    out = s.data_dir.parent / "report.html"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": SINGAPORE,
           "AWS_ACCESS_KEY_ID": key["accessKeyId"], "AWS_SECRET_ACCESS_KEY": key["secretAccessKey"]}
    run = subprocess.run([sys.executable, "-m", "serving.cli", "solution-version", "report", shop.version,
                          "--endpoint", s.url, "--out", str(out)], capture_output=True, text=True,
                         timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hit_rate_at_10" in out.read_text() and "coverage_at_10" in out.read_text()


def test_event_tracker_names_repeat_across_dataset_groups(shop: SimpleNamespace) -> None:
    other = shop.control.create_dataset_group(name="notebook-2")["datasetGroupArn"]
    tracker = shop.control.create_event_tracker(name="web", datasetGroupArn=other)["eventTrackerArn"]
    assert tracker != shop.tracker_arn and not tracker.endswith("/web")
    assert shop.control.describe_event_tracker(eventTrackerArn=tracker)["eventTracker"]["name"] == "web"


def test_an_item_field_filter_before_any_item_is_imported(shop: SimpleNamespace) -> None:
    """No ITEMS dataset: the error says what to create. An empty one: the filter matches no item."""
    include = shop.control.create_filter(
        name="by-genre", datasetGroupArn=shop.group,
        filterExpression="INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)")["filterArn"]
    exclude = shop.control.create_filter(
        name="no-horror", datasetGroupArn=shop.group,
        filterExpression='EXCLUDE ItemID WHERE Items.GENRES IN ("Horror")')["filterArn"]
    values = {"GENRES": '"Horror"'}
    with pytest.raises(shop.runtime.exceptions.InvalidInputException,
                       match="no ITEMS dataset with fields; create one whose schema has GENRES"):
        top(shop, filterArn=include, filterValues=values)

    schema = shop.control.create_schema(name="notebook-items", schema=ITEMS)["schemaArn"]
    shop.control.create_dataset(name="notebook-items", schemaArn=schema, datasetGroupArn=shop.group,
                                datasetType="ITEMS")

    def answered() -> bool:
        try:
            return top(shop, filterArn=include, filterValues=values) == []
        except shop.runtime.exceptions.InvalidInputException:
            return False
    until(answered, "the empty ITEMS dataset's fields never reached the filter")
    assert len(top(shop, filterArn=exclude)) == 10
