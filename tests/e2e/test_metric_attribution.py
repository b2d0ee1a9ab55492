"""Metric attribution through unchanged boto3: a shop measures what its recommendations bring.

It creates a metric attribution (clicks counted, revenue summed from the items' prices, minutes
watched summed from the events), sees it described and listed, changes its metrics, and is
refused what Personalize refuses. Then two campaigns answer, split A/B behind one campaign
ARN; the clicks and purchases that follow are attributed to the arm whose answer they came
from, on /metrics as they arrive and in the report with the lift of B over A.
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, api_stack
from test_training import RECIPE, ROLE, import_dataset, slice_of_ml100k, train, wait

from serving.ab_split import ARM_TAG, SHARE_TAG, in_arm_b
from serving.attribution import campaign_code

INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
    {"name": "EVENT_VALUE", "type": ["null", "float"]},
    {"name": "MINUTES_WATCHED", "type": ["null", "int"]},
    {"name": "RECOMMENDATION_ID", "type": ["null", "string"]},
    {"name": "EVENT_ATTRIBUTION_SOURCE", "type": ["null", "string"]}]})
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "PRICE", "type": "double"},
    {"name": "GENRES", "type": "string", "categorical": True}]})
CLICKS = {"eventType": "click", "metricName": "CLICKS", "expression": "SAMPLECOUNT()"}
REVENUE = {"eventType": "purchase", "metricName": "REVENUE", "expression": "SUM(Items.PRICE)"}
WATCHED = {"eventType": "watch", "metricName": "MINUTES", "expression": "SUM(Interactions.MINUTES_WATCHED)"}


def refused(code: str, call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response
    return caught.value.response["Error"]["Message"]


def datasets(control: Any, name: str) -> str:
    group = control.create_dataset_group(name=name)["datasetGroupArn"]
    for kind, schema in (("Interactions", INTERACTIONS), ("Items", ITEMS)):
        schema_arn = control.create_schema(name=f"{name}-{kind}", schema=schema)["schemaArn"]
        control.create_dataset(name=f"{name}-{kind}", schemaArn=schema_arn, datasetGroupArn=group,
                               datasetType=kind)
    return group


@pytest.fixture
def shop(embedded_server: Server, tmp_path: Path) -> Iterator[tuple[Any, str, Path]]:
    control = embedded_server.client("personalize")
    yield control, datasets(control, "shop"), tmp_path / "metrics"


def test_a_metric_attribution_is_created_described_listed_changed_and_deleted(
        shop: tuple[Any, str, Path]) -> None:
    control, group, out = shop
    output = {"roleArn": ROLE, "s3DataDestination": {"path": str(out)}}
    arn = control.create_metric_attribution(name="impact", datasetGroupArn=group, metrics=[CLICKS, REVENUE],
                                            metricsOutputConfig=output)["metricAttributionArn"]
    assert arn.endswith(":metric-attribution/impact")
    described = control.describe_metric_attribution(metricAttributionArn=arn)["metricAttribution"]
    assert {k: described[k] for k in ("name", "metricAttributionArn", "datasetGroupArn", "status",
                                      "metricsOutputConfig")} == {
        "name": "impact", "metricAttributionArn": arn, "datasetGroupArn": group, "status": "ACTIVE",
        "metricsOutputConfig": output}
    assert described["creationDateTime"] <= described["lastUpdatedDateTime"]
    listed = control.list_metric_attributions(datasetGroupArn=group)["metricAttributions"]
    assert [(x["name"], x["metricAttributionArn"], x["status"]) for x in listed] == [
        ("impact", arn, "ACTIVE")]
    assert control.list_metric_attribution_metrics(metricAttributionArn=arn)["metrics"] == [CLICKS, REVENUE]
    first = control.list_metric_attribution_metrics(metricAttributionArn=arn, maxResults=1)
    assert first["metrics"] == [CLICKS] and control.list_metric_attribution_metrics(
        metricAttributionArn=arn, nextToken=first["nextToken"])["metrics"] == [REVENUE]

    control.update_metric_attribution(metricAttributionArn=arn, addMetrics=[WATCHED],
                                      removeMetrics=["CLICKS"])
    assert control.list_metric_attribution_metrics(metricAttributionArn=arn)["metrics"] == [REVENUE, WATCHED]
    moved = {"roleArn": ROLE, "s3DataDestination": {"path": str(out / "v2")}}
    control.update_metric_attribution(metricAttributionArn=arn, metricsOutputConfig=moved)
    assert control.describe_metric_attribution(metricAttributionArn=arn)["metricAttribution"][
        "metricsOutputConfig"] == moved
    refused("ResourceInUseException", lambda: control.delete_dataset_group(datasetGroupArn=group))

    control.delete_metric_attribution(metricAttributionArn=arn)
    refused("ResourceNotFoundException",
            lambda: control.describe_metric_attribution(metricAttributionArn=arn))
    assert control.list_metric_attributions(datasetGroupArn=group)["metricAttributions"] == []


def test_what_personalize_refuses_is_refused(shop: tuple[Any, str, Path], embedded_server: Server) -> None:
    control, group, out = shop
    output = {"roleArn": ROLE, "s3DataDestination": {"path": str(out)}}

    def create(**changes: Any) -> Any:
        request = {"name": "impact", "datasetGroupArn": group, "metrics": [CLICKS],
                   "metricsOutputConfig": output} | changes
        return lambda: control.create_metric_attribution(**request)

    for metrics, why in (([CLICKS | {"expression": "COUNT()"}], "SAMPLECOUNT() or SUM"),
                         ([REVENUE | {"expression": "SUM(Items.COST)"}], "no column COST"),
                         ([REVENUE | {"expression": "SUM(Items.GENRES)"}], "needs a number"),
                         ([REVENUE | {"expression": "SUM(Users.AGE)"}], "Interactions or Items"),
                         ([CLICKS, CLICKS], "given twice"),
                         ([CLICKS | {"metricName": f"m{i}"} for i in range(11)], "at most 10")):
        assert why in refused("InvalidInputException", create(metrics=metrics))
    refused("InvalidInputException", create(metricsOutputConfig={
        "roleArn": ROLE, "s3DataDestination": {"path": "/etc/cron.d"}}))
    unknown = group.replace(":dataset-group/shop", ":dataset-group/nowhere")
    refused("ResourceNotFoundException", create(datasetGroupArn=unknown))
    no_items = control.create_dataset_group(name="no-items")["datasetGroupArn"]
    assert "no ITEMS dataset" in refused("InvalidInputException", create(datasetGroupArn=no_items,
                                                                         metrics=[REVENUE]))
    arn = create()()["metricAttributionArn"]
    refused("ResourceAlreadyExistsException", create(name="another"))  # one per dataset group
    refused("ResourceAlreadyExistsException", lambda: control.update_metric_attribution(
        metricAttributionArn=arn, addMetrics=[CLICKS]))
    refused("InvalidInputException", lambda: control.update_metric_attribution(
        metricAttributionArn=arn, removeMetrics=["NOT_THERE"]))
    # another region sees none of it (as another account does: tests/e2e/test_accounts.py)
    other = embedded_server.client("personalize", region="eu-west-1")
    refused("ResourceNotFoundException", lambda: other.describe_metric_attribution(metricAttributionArn=arn))
    assert other.list_metric_attributions()["metricAttributions"] == []


def items_csv(to: Path) -> Path:
    """ml-100k's items with a made-up price each (a tenth of the item id, in dollars)."""
    with open(to, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ITEM_ID", "PRICE", "GENRES"])
        writer.writerows([str(i), round(i / 10, 2), "Drama"] for i in range(1, 1683))
    return to


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Server]:
    """The API; distributed, with a stream worker archiving what the report reads."""
    yield from api_stack(request, tmp_path, unique, request.param == "distributed")


def test_two_campaigns_split_ab_each_arms_clicks_and_revenue_and_the_lift(
        stack: Server, tmp_path: Path, unique: str) -> None:
    server = stack
    control, runtime = server.client("personalize"), server.client("personalize-runtime")
    events = server.client("personalize-events")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    import_dataset(control, group, f"{unique}-i", "INTERACTIONS", INTERACTIONS,
                   slice_of_ml100k(tmp_path / "ml.csv", 5_000))
    import_dataset(control, group, f"{unique}-items", "ITEMS", ITEMS, items_csv(tmp_path / "items.csv"))
    arms = {}
    for arm in ("a", "b"):
        solution = control.create_solution(name=f"{unique}-{arm}", datasetGroupArn=group,
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        version = train(control, solution)["solutionVersionArn"]
        arms[arm] = control.create_campaign(name=f"{unique}-{arm}", solutionVersionArn=version)["campaignArn"]
    a, b = arms["a"], arms["b"]
    attribution = control.create_metric_attribution(
        name=unique, datasetGroupArn=group, metrics=[CLICKS, REVENUE],
        metricsOutputConfig={"roleArn": ROLE, "s3DataDestination": {"path": str(tmp_path / "out")}})[
        "metricAttributionArn"]
    refused("InvalidInputException", lambda: control.tag_resource(resourceArn=a, tags=[
        {"tagKey": ARM_TAG, "tagValue": b}, {"tagKey": SHARE_TAG, "tagValue": "1.5"}]))
    refused("InvalidInputException", lambda: control.tag_resource(resourceArn=a, tags=[
        {"tagKey": ARM_TAG, "tagValue": a}]))
    control.tag_resource(resourceArn=a, tags=[{"tagKey": ARM_TAG, "tagValue": b},
                                              {"tagKey": SHARE_TAG, "tagValue": "0.5"}])
    refused("ResourceInUseException", lambda: control.delete_campaign(campaignArn=b))
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
    time.sleep(1.2)  # the runtime reads a campaign's row (its tags) at most a second old

    # every user asks campaign A; the split answers half of them with B, each always with the same
    clicks, revenue, now, streamed = {a: 0, b: 0}, {a: [], b: []}, time.time(), 2
    for u in range(1, 81):
        user = str(u)
        served = b if in_arm_b(a, user, 0.5) else a
        answer = runtime.get_recommendations(campaignArn=a, userId=user, numResults=5)
        rid = answer["recommendationId"]
        assert len(rid) <= 40 and rid[4:12] == campaign_code(served)
        assert runtime.get_recommendations(campaignArn=a, userId=user)["recommendationId"][4:12] == rid[4:12]
        top = [i["itemId"] for i in answer["itemList"]]
        bought = top[:2] if served == b else top[:1]  # arm B's users buy more
        sent = [{"eventType": "click", "itemId": top[0], "sentAt": now, "recommendationId": rid},
                *({"eventType": "purchase", "itemId": i, "sentAt": now + 1, "recommendationId": rid}
                  for i in bought)]
        events.put_events(trackingId=tracker, userId=user, sessionId=f"s{u}", eventList=sent)
        streamed += len(sent)
        clicks[served] += 1
        revenue[served].append(sum(int(i) / 10 for i in bought))
    events.put_events(trackingId=tracker, userId="81", sessionId="s81", eventList=[
        {"eventType": "click", "itemId": "50", "sentAt": now, "metricAttribution": {
            "eventAttributionSource": "newsletter"}},
        {"eventType": "click", "itemId": "50", "sentAt": now}])

    # /metrics has them per source as they arrive
    account = a.split(":")[4]
    seen = samples(server.url)

    def metric(name: str, source: str) -> float:
        labels = {"account": account, "metric_attribution": unique, "metric": name, "source": source}
        return seen.get(("opz_api_attributed_metric", frozenset(labels.items())), 0.0)
    assert 10 < clicks[b] < 70
    assert metric("CLICKS", f"{unique}-a") == clicks[a] and metric("CLICKS", f"{unique}-b") == clicks[b]
    assert metric("CLICKS", "newsletter") == 1 and metric("CLICKS", "SOURCE_NAME_UNDEFINED") == 1
    assert metric("REVENUE", f"{unique}-b") == pytest.approx(sum(revenue[b]))

    # the report: per source, and per arm with the lift, once the archive has the events
    deadline = time.monotonic() + 60
    while (report := httpx.get(server.url + "/console/api/attribution", params={
            "metricAttributionArn": attribution}, timeout=60).json())["events"] < 5_000 + streamed:
        assert time.monotonic() < deadline, report["events"]
        time.sleep(0.5)
    totals = {(t["metricName"], t["source"]): t["value"] for t in report["totals"]}
    assert totals[("CLICKS", a)] == clicks[a] and totals[("CLICKS", b)] == clicks[b]
    assert totals[("CLICKS", "newsletter")] == 1 and totals[("REVENUE", b)] == pytest.approx(sum(revenue[b]))
    [split] = report["splits"]
    assert (split["campaignArn"], split["armB"], split["share"]) == (a, b, 0.5)
    by_metric = {m["metricName"]: m for m in split["metrics"]}
    rev = by_metric["REVENUE"]
    # user 81 (only clicks, no recommendation) is active too: in its arm with nothing attributed
    assert rev["a"]["users"] + rev["b"]["users"] == 81
    a_users = revenue[a] + ([] if in_arm_b(a, "81", 0.5) else [0.0])
    b_users = revenue[b] + ([0.0] if in_arm_b(a, "81", 0.5) else [])
    assert rev["a"]["mean"] == pytest.approx(sum(a_users) / len(a_users))
    assert rev["b"]["mean"] == pytest.approx(sum(b_users) / len(b_users))
    assert rev["lift"] == pytest.approx(rev["b"]["mean"] / rev["a"]["mean"] - 1)
    assert rev["low"] < rev["lift"] < rev["high"]

    # the same report as a page, through the CLI
    page = tmp_path / "impact.html"
    out = subprocess.run([sys.executable, "-m", "serving.cli", "metric-attribution", "report", attribution,
                          "--out", str(page), "--endpoint-url", server.url],
                         capture_output=True, text=True, timeout=120, env=server.env)
    assert out.returncode == 0, out.stderr
    assert f"REVENUE lift of {unique}-b over {unique}-a" in out.stdout
    assert "<svg" in page.read_text() and "A/B split" in page.read_text()

    # ending the split: every user is served by A again, and B may go
    control.untag_resource(resourceArn=a, tagKeys=[ARM_TAG, SHARE_TAG])
    time.sleep(1.2)
    codes = {runtime.get_recommendations(campaignArn=a, userId=str(u))["recommendationId"][4:12]
             for u in range(1, 21)}
    assert codes == {campaign_code(a)}
    control.delete_campaign(campaignArn=b)


def test_an_import_publishes_its_attributed_metrics_as_personalizes_csv(
        shop: tuple[Any, str, Path], tmp_path: Path) -> None:
    control, group, out = shop
    control.create_metric_attribution(name="impact", datasetGroupArn=group, metrics=[CLICKS, WATCHED],
                                      metricsOutputConfig={"roleArn": ROLE, "s3DataDestination": {
                                          "path": str(out)}})
    dataset = next(d["datasetArn"] for d in control.list_datasets(datasetGroupArn=group)["datasets"]
                   if d["datasetType"] == "INTERACTIONS")
    rows = tmp_path / "clicks.csv"
    rows.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,MINUTES_WATCHED,EVENT_ATTRIBUTION_SOURCE\n"
                    "u1,i1,1699999300,click,,email\nu2,i1,1699999400,click,,email\n"
                    "u1,i2,1699999500,watch,30,\nu2,i2,1700000200,watch,12,email\n"
                    "u3,i3,1699999600,view,,email\n")
    job = control.create_dataset_import_job(jobName="with-metrics", datasetArn=dataset, roleArn=ROLE,
                                            dataSource={"dataLocation": str(rows)},
                                            publishAttributionMetricsToS3=True)["datasetImportJobArn"]
    done = wait(lambda: control.describe_dataset_import_job(datasetImportJobArn=job)["datasetImportJob"])
    assert done["status"] == "ACTIVE" and done["publishAttributionMetricsToS3"] is True
    [report] = out.glob("AggregatedAttributionMetrics-FULL-*.csv")
    with open(report, newline="") as f:
        got = list(csv.DictReader(f))
    assert got == [
        {"METRIC_NAME": "CLICKS", "EVENT_TYPE": "click", "VALUE": "2.0", "MATH_FUNCTION": "samplecount",
         "EVENT_ATTRIBUTION_SOURCE": "email", "TIMESTAMP": "1699999200"},
        {"METRIC_NAME": "MINUTES", "EVENT_TYPE": "watch", "VALUE": "30.0", "MATH_FUNCTION": "sum",
         "EVENT_ATTRIBUTION_SOURCE": "SOURCE_NAME_UNDEFINED", "TIMESTAMP": "1699999200"},
        {"METRIC_NAME": "MINUTES", "EVENT_TYPE": "watch", "VALUE": "12.0", "MATH_FUNCTION": "sum",
         "EVENT_ATTRIBUTION_SOURCE": "email", "TIMESTAMP": "1700000100"}]
