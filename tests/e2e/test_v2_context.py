"""The v2 recipes learn the context of events through unchanged boto3: the interactions have a
DEVICE field, users pick A items on a phone and B items on a desktop, and the same user's
GetRecommendations and GetPersonalizedRanking answer by the `context` the request gives, a new
visitor's too. A
PutEvents naming its device in `properties` is taken (the next training learns it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from support import Server, write_csv
from test_training import RECIPE, import_dataset, train

INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "DEVICE", "type": "string", "categorical": True}]})
ON = {"phone": [f"A{i}" for i in range(8)], "desktop": [f"B{i}" for i in range(8)]}


def on_devices(tmp_path: Path) -> Path:
    """200 users, 8 events each on a device drawn at random: an A item on a phone, else a B item."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(200):
        for k in range(8):
            device = str(rng.choice(list(ON)))
            rows.append({"USER_ID": f"u{u}", "ITEM_ID": str(rng.choice(ON[device])),
                         "TIMESTAMP": 1_700_000_000 + 100_000 * u + 60 * k, "DEVICE": device})
    return write_csv(tmp_path / "clicks.csv", rows)


def test_the_same_user_gets_the_items_of_its_device(embedded_server: Server, tmp_path: Path) -> None:
    control, runtime = embedded_server.client("personalize"), embedded_server.client("personalize-runtime")
    group = control.create_dataset_group(name="v2-context")["datasetGroupArn"]
    import_dataset(control, group, "v2-context-clicks", "INTERACTIONS", INTERACTIONS, on_devices(tmp_path))
    campaigns = {}
    for recipe in ("aws-user-personalization-v2", "aws-personalized-ranking-v2"):
        solution = control.create_solution(name=f"{recipe}-context", datasetGroupArn=group,
                                           recipeArn=RECIPE + recipe)["solutionArn"]
        version = train(control, solution)
        assert version["status"] == "ACTIVE", version
        campaigns[recipe] = control.create_campaign(
            name=f"{recipe}-context", solutionVersionArn=version["solutionVersionArn"])["campaignArn"]

    for device, mine in (("phone", "A"), ("desktop", "B")):
        listed = [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=campaigns["aws-user-personalization-v2"], userId="u3", numResults=5,
            context={"DEVICE": device})["itemList"]]
        assert all(i.startswith(mine) for i in listed), (device, listed)
        ranked = runtime.get_personalized_ranking(
            campaignArn=campaigns["aws-personalized-ranking-v2"], userId="u3", inputList=["A1", "B1"],
            context={"DEVICE": device})["personalizedRanking"]
        assert ranked[0]["itemId"].startswith(mine), (device, ranked)
    # a visitor with no history yet: its device alone says what it is likely to pick first
    for device, mine in (("phone", "A"), ("desktop", "B")):
        listed = [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=campaigns["aws-user-personalization-v2"], userId="new-visitor", numResults=5,
            context={"DEVICE": device})["itemList"]]
        assert all(i.startswith(mine) for i in listed), (device, listed)
    # no context, or a device the model never saw: answered as missing
    for context in ({}, {"DEVICE": "tv"}):
        assert len(runtime.get_recommendations(campaignArn=campaigns["aws-user-personalization-v2"],
                                               userId="u3", numResults=5, context=context)["itemList"]) == 5

    tracker = control.create_event_tracker(name="v2-context", datasetGroupArn=group)["trackingId"]
    embedded_server.client("personalize-events").put_events(
        trackingId=tracker, userId="u3", sessionId="s-u3", eventList=[
            {"eventType": "click", "itemId": "A2", "sentAt": 1_800_000_000,
             "properties": '{"device": "phone"}'}])
