"""Tags through unchanged boto3: given at create time on every resource that takes them, then
listed, added, changed and removed, within Personalize's rules, and only by their account."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from support import Server

RECIPE = "arn:aws:personalize:::recipe/aws-popularity-count"
SCHEMA = json.dumps({"type": "record", "name": "Interactions",
                     "namespace": "com.amazonaws.personalize.schema", "version": "1.0",
                     "fields": [{"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
                                {"name": "TIMESTAMP", "type": "long"}]})
NOT_CLICKED = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'


def tags(**pairs: str) -> list[dict[str, str]]:
    return [{"tagKey": k.replace("_", "-"), "tagValue": v} for k, v in pairs.items()]


def refused(code: str, call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response
    return caught.value.response["Error"]["Message"]


@pytest.fixture
def shop(embedded_server: Server) -> Iterator[tuple[Any, dict[str, str]]]:
    """A dataset group with one of each resource that takes tags, each created with its own."""
    control = embedded_server.client("personalize")
    group = control.create_dataset_group(name="tagged", tags=tags(team="growth", cost_center="42"))
    arns = {"group": group["datasetGroupArn"]}
    schema = control.create_schema(name="tagged-schema", schema=SCHEMA)["schemaArn"]
    arns["schema"] = schema
    arns["dataset"] = control.create_dataset(name="clicks", datasetGroupArn=arns["group"], schemaArn=schema,
                                             datasetType="Interactions",
                                             tags=tags(kind="clicks"))["datasetArn"]
    arns["tracker"] = control.create_event_tracker(name="web", datasetGroupArn=arns["group"],
                                                   tags=tags(channel="web"))["eventTrackerArn"]
    arns["filter"] = control.create_filter(name="no-clicked", datasetGroupArn=arns["group"],
                                           filterExpression=NOT_CLICKED, tags=tags(use="home"))["filterArn"]
    arns["solution"] = control.create_solution(name="popular", datasetGroupArn=arns["group"],
                                               recipeArn=RECIPE, tags=tags(model="baseline"))["solutionArn"]
    arns["version"] = control.create_solution_version(solutionArn=arns["solution"],
                                                      tags=tags(run="nightly"))["solutionVersionArn"]
    yield control, arns


def listed(control: Any, arn: str) -> list[dict[str, str]]:
    return control.list_tags_for_resource(resourceArn=arn)["tags"]


def test_tags_given_at_create_are_listed_in_order_and_kept_out_of_describe(
        shop: tuple[Any, dict], embedded_server: Server) -> None:
    control, arns = shop
    assert listed(control, arns["group"]) == tags(team="growth", cost_center="42")
    assert listed(control, arns["dataset"]) == tags(kind="clicks")
    assert listed(control, arns["tracker"]) == tags(channel="web")
    assert listed(control, arns["filter"]) == tags(use="home")
    assert listed(control, arns["solution"]) == tags(model="baseline")
    assert listed(control, arns["version"]) == tags(run="nightly")
    # boto3 drops members its model lacks: read the wire itself
    for operation, member, arn in (("DescribeDatasetGroup", "datasetGroupArn", arns["group"]),
                                   ("DescribeSolution", "solutionArn", arns["solution"])):
        described = httpx.post(embedded_server.url, json={member: arn}, headers={
            "X-Amz-Target": f"AmazonPersonalize.{operation}", "Content-Type": "application/x-amz-json-1.1"})
        assert described.status_code == 200 and arn in described.text and "growth" not in described.text
        assert "tags" not in next(iter(described.json().values()))


def test_tagging_adds_and_overwrites_untagging_removes(shop: tuple[Any, dict]) -> None:
    control, arns = shop
    control.tag_resource(resourceArn=arns["group"], tags=tags(team="search", owner="ana"))
    assert listed(control, arns["group"]) == tags(team="search", cost_center="42", owner="ana")
    control.untag_resource(resourceArn=arns["group"], tagKeys=["cost-center", "never-there"])
    assert listed(control, arns["group"]) == tags(team="search", owner="ana")
    control.untag_resource(resourceArn=arns["group"], tagKeys=["team", "owner"])
    assert listed(control, arns["group"]) == []
    assert listed(control, arns["solution"]) == tags(model="baseline")  # another resource's stay


def test_tags_follow_personalizes_rules(shop: tuple[Any, dict]) -> None:
    control, arns = shop
    fifty = [{"tagKey": f"k{n}", "tagValue": "v"} for n in range(50)]
    refused("TooManyTagsException", lambda: control.create_dataset_group(
        name="too-many", tags=fifty + [{"tagKey": "k50", "tagValue": "v"}]))
    gone = arns["group"].replace("tagged", "too-many")
    refused("ResourceNotFoundException", lambda: control.describe_dataset_group(datasetGroupArn=gone))
    control.tag_resource(resourceArn=arns["solution"], tags=fifty[1:])  # 49 new + 1 kept: 50
    refused("TooManyTagsException", lambda: control.tag_resource(resourceArn=arns["solution"],
                                                                 tags=tags(one_more="v")))
    assert len(listed(control, arns["solution"])) == 50  # nothing changed
    refused("TooManyTagKeysException", lambda: control.untag_resource(
        resourceArn=arns["solution"], tagKeys=[f"k{n}" for n in range(51)]))

    secret = "s3cr3t-value"
    message = refused("InvalidInputException", lambda: control.tag_resource(
        resourceArn=arns["filter"], tags=[{"tagKey": "aws:owner", "tagValue": secret}]))
    assert "aws:" in message and secret not in message
    message = refused("InvalidInputException", lambda: control.tag_resource(
        resourceArn=arns["filter"], tags=[{"tagKey": "bad#key", "tagValue": secret}]))
    assert "pattern" in message and secret not in message
    twice, too_long = tags(a="1") + tags(a="2"), [{"tagKey": "k" * 129, "tagValue": ""}]
    refused("InvalidInputException", lambda: control.tag_resource(resourceArn=arns["filter"], tags=twice))
    refused("InvalidInputException", lambda: control.tag_resource(resourceArn=arns["filter"], tags=too_long))
    assert listed(control, arns["filter"]) == tags(use="home")

    refused("InvalidInputException", lambda: control.tag_resource(resourceArn=arns["schema"],
                                                                  tags=tags(a="1")))
    refused("ResourceNotFoundException", lambda: listed(control, arns["group"] + "-gone"))
    # whether a tracker takes unsigned PutEvents is decided when it is created, not by a later tag
    message = refused("InvalidInputException", lambda: control.tag_resource(
        resourceArn=arns["tracker"], tags=[{"tagKey": "opz:public", "tagValue": "true"}]))
    assert "created" in message
    assert listed(control, arns["tracker"]) == tags(channel="web")


def test_only_the_resources_account_sees_or_changes_its_tags(tmp_path: Path) -> None:
    server = Server(tmp_path / "data")
    key_a, key_b = server.create_key("111111111111"), server.create_key("222222222222")
    server.start()
    try:
        a, b = server.client("personalize", key_a), server.client("personalize", key_b)
        group = a.create_dataset_group(name="mine", tags=tags(team="growth"))["datasetGroupArn"]
        for call in (lambda: b.list_tags_for_resource(resourceArn=group),
                     lambda: b.tag_resource(resourceArn=group, tags=tags(team="stolen")),
                     lambda: b.untag_resource(resourceArn=group, tagKeys=["team"])):
            refused("ResourceNotFoundException", call)
        assert listed(a, group) == tags(team="growth")
    finally:
        server.stop()
