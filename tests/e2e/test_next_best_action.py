"""Next best action through unchanged boto3: a shop recommends actions (join the loyalty program,
download the app, ...), not items.

It creates the ACTIONS and ACTION_INTERACTIONS datasets next to its item interactions, imports
them in bulk, adds an action with PutActions, trains aws-next-best-action and deploys it. Each
user gets the actions their peers take (two kinds of users here, each with its own items and its
own actions), never an expired one; an action added or expired since training is offered or
dropped at once. A user's PutActionInteractions reaches the ACTION_INTERACTIONS dataset (an
export shows it, an event sent twice once) and the next training: the action just taken waits
its REPEAT_FREQUENCY. Both modes: embedded, and distributed (Kafka, a stream worker writing the
datasets). Bad requests get Personalize's errors.
"""
from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support import Server, api_stack, write_csv
from test_training import RECIPE, ROLE, import_dataset, wait

USERS, ITEMS_PER_USER, ACTIONS_PER_USER = 120, 10, 25  # 1,200 item and 3,000 action interactions
T0 = 1_700_000_000
# each kind of user (u0, u2, ... and u1, u3, ...) takes its own actions; "expired" would top the
# first kind's list, had it not expired long ago; a4 is seldom taken: too few TAKEN to be scored
TAKE = {"a0": (0.75, 0.1), "a1": (0.65, 0.1), "a2": (0.1, 0.75), "a3": (0.1, 0.65), "a4": (0.04, 0.04),
        "expired": (0.85, 0.1)}
INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}]})
ACTIONS = json.dumps({"type": "record", "name": "Actions", "fields": [
    {"name": "ACTION_ID", "type": "string"}, {"name": "VALUE", "type": ["null", "long"]},
    {"name": "EXPIRATION_TIMESTAMP", "type": ["null", "long"]},
    {"name": "REPEAT_FREQUENCY", "type": ["null", "int"]},
    {"name": "CREATION_TIMESTAMP", "type": ["null", "long"]}]})
ACTION_INTERACTIONS = json.dumps({"type": "record", "name": "ActionInteractions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ACTION_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"}]})



def shop(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The item interactions, actions and action interactions CSVs, the same every run."""
    rng = random.Random(7)
    items, events = [], []
    for u in range(USERS):
        kind = u % 2
        for j in range(ITEMS_PER_USER):
            item = f"i{kind * 20 + rng.randrange(20)}" if rng.random() < 0.8 else f"i{40 + rng.randrange(5)}"
            items.append({"USER_ID": f"u{u}", "ITEM_ID": item, "TIMESTAMP": T0 + j * 3600})
        for k in range(ACTIONS_PER_USER):
            action = rng.choice(sorted(TAKE))
            taken = rng.random() < TAKE[action][kind]
            events.append({"USER_ID": f"u{u}", "ACTION_ID": action, "TIMESTAMP": T0 + 86_400 + k * 3600,
                           "EVENT_TYPE": "Taken" if taken else rng.choice(["Not taken", "VIEWED"])})
    actions = [{"ACTION_ID": a, "VALUE": v, "EXPIRATION_TIMESTAMP": e, "REPEAT_FREQUENCY": r,
                "CREATION_TIMESTAMP": T0} for a, v, e, r in (
        ("a0", 5, "", 30), ("a1", 3, "", ""), ("a2", 4, "", ""), ("a3", 2, "", ""), ("a4", 1, "", ""),
        ("expired", 9, 1_000_000_000, ""))]
    return (write_csv(tmp_path / "items.csv", items), write_csv(tmp_path / "actions.csv", actions),
            write_csv(tmp_path / "action-interactions.csv", events))


def refused(code: str, call: Callable[[], Any]) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response
    return caught.value.response["Error"]["Message"]


def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)
    return found


def trained(control: Any, solution: str) -> str:
    arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    version = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
    assert version["status"] == "ACTIVE", version.get("failureReason")
    return arn


def exported(control: Any, dataset: str, to: Path, mode: str) -> list[dict[str, str]]:
    job = f"x{time.monotonic_ns()}"
    arn = control.create_dataset_export_job(jobName=job, datasetArn=dataset, roleArn=ROLE, ingestionMode=mode,
                                            jobOutput={"s3DataDestination": {"path": to.as_uri()}})
    assert wait(lambda: control.describe_dataset_export_job(datasetExportJobArn=arn["datasetExportJobArn"])[
        "datasetExportJob"], 60)["status"] == "ACTIVE"
    with open(to / job / "part-00000.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Server]:
    """The API; distributed, with a stream worker writing PutActions / PutActionInteractions into
    the datasets."""
    yield from api_stack(request, tmp_path, unique, request.param == "distributed")


def test_users_get_the_actions_their_peers_take(stack: Server, tmp_path: Path, unique: str) -> None:
    control, events = stack.client("personalize"), stack.client("personalize-events")
    runtime = stack.client("personalize-runtime")
    items_csv, actions_csv, interactions_csv = shop(tmp_path)
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    import_dataset(control, group, f"{unique}-items", "INTERACTIONS", INTERACTIONS, items_csv)
    import_dataset(control, group, f"{unique}-actions", "ACTIONS", ACTIONS, actions_csv)
    import_dataset(control, group, f"{unique}-ai", "Action_Interactions", ACTION_INTERACTIONS,
                   interactions_csv)  # datasetType is case-insensitive, as Personalize's
    listed = control.list_datasets(datasetGroupArn=group)["datasets"]
    datasets = {d["datasetType"]: d["datasetArn"] for d in listed}
    assert set(datasets) == {"INTERACTIONS", "ACTIONS", "ACTION_INTERACTIONS"}
    tracker = control.describe_dataset(datasetArn=datasets["ACTION_INTERACTIONS"])["dataset"]["trackingId"]
    assert "trackingId" not in control.describe_dataset(datasetArn=datasets["ACTIONS"])["dataset"]
    events.put_actions(datasetArn=datasets["ACTIONS"], actions=[
        {"actionId": "loyalty", "properties": json.dumps({"value": 10,
                                                          "creationTimestamp": int(time.time())})}])

    recipe = control.describe_recipe(recipeArn=RECIPE + "aws-next-best-action")["recipe"]
    assert recipe["recipeType"] == "PERSONALIZED_ACTIONS"
    solution = control.create_solution(name=f"{unique}-nba", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-next-best-action")["solutionArn"]
    version = trained(control, solution)
    metrics = control.get_solution_metrics(solutionVersionArn=version)["metrics"]
    assert 0 < metrics["normalized_discounted_cumulative_gain_at_5"] <= 1
    campaign = control.create_campaign(name=f"{unique}-nba", solutionVersionArn=version)["campaignArn"]

    def actions(user: str, k: int | None = None) -> list[tuple[str, float]]:
        answer = runtime.get_action_recommendations(campaignArn=campaign, userId=user,
                                                    **({"numResults": k} if k else {}))
        assert answer["recommendationId"].startswith("RID-")
        return [(a["actionId"], a["score"]) for a in answer["actionList"]]

    for user, theirs in (("u0", {"a0", "a1"}), ("u2", {"a0", "a1"}), ("u1", {"a2", "a3"}),
                         ("u3", {"a2", "a3"})):
        top = actions(user)
        assert len(top) == 5 and {a for a, _ in top[:2]} == theirs, (user, top)
        assert top[0][1] > 0.5 and [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    every = until(lambda: (found := actions("u0", 100)) and "loyalty" in dict(found) and found, "PutActions")
    assert "expired" not in dict(every) and dict(every)["loyalty"] == 0.0  # new: no interactions yet
    assert {a for a, s in every if s == 0.0} == {"loyalty", "a4"}  # a4: too few TAKEN to be scored

    # an action expired since training is dropped at once, without training again
    events.put_actions(datasetArn=datasets["ACTIONS"], actions=[
        {"actionId": "a1", "properties": json.dumps({"value": 3,
                                                     "expirationTimestamp": int(time.time()) - 1})}])
    until(lambda: "a1" not in dict(actions("u0", 100)), "the expired a1 is dropped")

    # PutActionInteractions reaches the dataset (an event sent twice is one row) and training
    now = int(time.time())
    taken = {"actionId": "a0", "userId": "u0", "sessionId": "s-u0", "timestamp": now, "eventType": "Taken",
             "eventId": f"{unique}-took"}
    events.put_action_interactions(trackingId=tracker, actionInteractions=[taken])
    events.put_action_interactions(trackingId=tracker, actionInteractions=[taken, {
        "actionId": "loyalty", "sessionId": "s-anonymous", "timestamp": now, "eventType": "Not Taken"}])
    rows = until(lambda: len(found := exported(control, datasets["ACTION_INTERACTIONS"], tmp_path / "out",
                                               "PUT")) >= 2 and found, "the action interactions stored")
    assert sorted((r["USER_ID"], r["ACTION_ID"], r["EVENT_TYPE"]) for r in rows) == [
        ("s-anonymous", "loyalty", "Not Taken"), ("u0", "a0", "Taken")]
    assert len(exported(control, datasets["ACTION_INTERACTIONS"], tmp_path / "out", "ALL")) == \
        USERS * ACTIONS_PER_USER + 2
    assert "a0" in dict(actions("u0", 100))  # the model of before has not seen it
    control.update_campaign(campaignArn=campaign, solutionVersionArn=trained(control, solution))
    until(lambda: "a0" not in dict(actions("u0", 100)), "a0 waits its REPEAT_FREQUENCY of 30 days")
    assert "a0" in dict(actions("u2", 100))  # u2 did not take it now

    # what a campaign of actions does not answer, and what GetActionRecommendations refuses
    invalid = "InvalidInputException"
    assert "GetActionRecommendations" in refused(invalid, lambda: runtime.get_recommendations(
        campaignArn=campaign, userId="u0"))
    assert "GetActionRecommendations" in refused(invalid, lambda: runtime.get_personalized_ranking(
        campaignArn=campaign, userId="u0", inputList=["i1"]))
    popular = control.create_solution(name=f"{unique}-pop", datasetGroupArn=group,
                                      recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    items = control.create_campaign(name=f"{unique}-pop",
                                    solutionVersionArn=trained(control, popular))["campaignArn"]
    assert "GetRecommendations" in refused(invalid, lambda: runtime.get_action_recommendations(
        campaignArn=items, userId="u0"))
    assert "numResults" in refused("InvalidInputException", lambda: runtime.get_action_recommendations(
        campaignArn=campaign, userId="u0", numResults=101))
    seen = control.create_filter(name=f"{unique}-f", datasetGroupArn=group,
                                 filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("x")')
    assert "filterArn" in refused("InvalidInputException", lambda: runtime.get_action_recommendations(
        campaignArn=campaign, userId="u0", filterArn=seen["filterArn"]))
    refused("ResourceNotFoundException", lambda: runtime.get_action_recommendations(
        campaignArn=campaign.replace(f"{unique}-nba", "nope"), userId="u0"))
    assert "UPDATE" in refused("InvalidInputException", lambda: control.create_solution_version(
        solutionArn=solution, trainingMode="UPDATE"))
    assert "recommends actions" in refused(invalid, lambda: control.create_batch_inference_job(
        jobName=f"{unique}-batch", solutionVersionArn=version, roleArn=ROLE,
        jobInput={"s3DataSource": {"path": (tmp_path / "in.json").as_uri()}},
        jobOutput={"s3DataDestination": {"path": (tmp_path / "batch").as_uri()}}))


def test_bad_action_data_gets_personalizes_errors(embedded_server: Server, unique: str) -> None:
    control, events = embedded_server.client("personalize"), embedded_server.client("personalize-events")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    no_id = control.create_schema(name=f"{unique}-no-id", schema=json.dumps({
        "type": "record", "name": "Actions", "fields": [{"name": "VALUE", "type": "long"}]}))["schemaArn"]
    assert "ACTION_ID" in refused("InvalidInputException", lambda: control.create_dataset(
        name="actions", schemaArn=no_id, datasetGroupArn=group, datasetType="ACTIONS"))
    schemas = {kind: control.create_schema(name=f"{unique}-{kind}", schema=text)["schemaArn"]
               for kind, text in (("ACTIONS", ACTIONS), ("ACTION_INTERACTIONS", ACTION_INTERACTIONS))}
    assert "ACTION_INTERACTIONS" in refused("InvalidInputException", lambda: control.create_dataset(
        name="wrong", schemaArn=schemas["ACTIONS"], datasetGroupArn=group, datasetType="ACTION_INTERACTIONS"))
    actions = control.create_dataset(name="actions", schemaArn=schemas["ACTIONS"], datasetGroupArn=group,
                                     datasetType="ACTIONS")["datasetArn"]
    tracked = control.create_dataset(name="ai", schemaArn=schemas["ACTION_INTERACTIONS"],
                                     datasetGroupArn=group, datasetType="ACTION_INTERACTIONS")["datasetArn"]
    tracker = control.describe_dataset(datasetArn=tracked)["dataset"]["trackingId"]
    shop = control.create_dataset_group(name=f"{unique}-shop", domain="ECOMMERCE")["datasetGroupArn"]
    domain = control.create_schema(name=f"{unique}-domain", schema=ACTIONS, domain="ECOMMERCE")["schemaArn"]
    assert "custom dataset groups only" in refused("InvalidInputException", lambda: control.create_dataset(
        name="actions", schemaArn=domain, datasetGroupArn=shop, datasetType="ACTIONS"))

    assert 'field "colour"' in refused("InvalidInputException", lambda: events.put_actions(
        datasetArn=actions, actions=[{"actionId": "a", "properties": json.dumps({"colour": "red"})}]))
    assert "not a long" in refused("InvalidInputException", lambda: events.put_actions(
        datasetArn=actions, actions=[{"actionId": "a", "properties": json.dumps({"value": "high"})}]))
    assert "not ACTIONS" in refused("InvalidInputException", lambda: events.put_actions(
        datasetArn=tracked, actions=[{"actionId": "a"}]))
    refused("ResourceNotFoundException", lambda: events.put_actions(
        datasetArn=actions.replace(unique, "nope"), actions=[{"actionId": "a"}]))

    event = {"actionId": "a", "userId": "u", "sessionId": "s", "timestamp": T0, "eventType": "Viewed"}
    events.put_action_interactions(trackingId=tracker, actionInteractions=[event])
    web = control.create_event_tracker(name="web", datasetGroupArn=group)["trackingId"]
    for wrong in ("nope", web):  # an event tracker is no action interaction tracker
        refused("ResourceNotFoundException", lambda wrong=wrong: events.put_action_interactions(
            trackingId=wrong, actionInteractions=[event]))
    invalid = "InvalidInputException"
    assert "Taken, Not Taken or Viewed" in refused(invalid, lambda: events.put_action_interactions(
        trackingId=tracker, actionInteractions=[event | {"eventType": "Clicked"}]))
    assert "reserved" in refused("InvalidInputException", lambda: events.put_action_interactions(
        trackingId=tracker, actionInteractions=[event | {"properties": json.dumps({"userId": "x"})}]))
    assert 'field "numberOfActions"' in refused(invalid, lambda: events.put_action_interactions(
        trackingId=tracker, actionInteractions=[event | {"properties": json.dumps({"numberOfActions": 2})}]))
    assert "actionInteractions" in refused("InvalidInputException", lambda: events.put_action_interactions(
        trackingId=tracker, actionInteractions=[event] * 11))

    solution = control.create_solution(name=f"{unique}-nba", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-next-best-action",
                                       solutionConfig={"featureTransformationParameters": {
                                           "action_optimization_period": "21"}})["solutionArn"]
    assert control.describe_solution(solutionArn=solution)["solution"]["recipeArn"] == \
        RECIPE + "aws-next-best-action"
    assert "action_optimization_period" in refused("InvalidInputException", lambda: control.create_solution(
        name=f"{unique}-long", datasetGroupArn=group, recipeArn=RECIPE + "aws-next-best-action",
        solutionConfig={"featureTransformationParameters": {"action_optimization_period": "60"}}))
    assert "no tunable" in refused("InvalidInputException", lambda: control.create_solution(
        name=f"{unique}-hpo", datasetGroupArn=group, recipeArn=RECIPE + "aws-next-best-action",
        performHPO=True))
    arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    failed = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
    assert failed["status"] == "CREATE FAILED" and "INTERACTIONS" in failed["failureReason"]
