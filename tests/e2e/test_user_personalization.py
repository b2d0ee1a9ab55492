"""aws-user-personalization through boto3: a campaign's itemExplorationConfig mixes young items into
the list (none at weight 0, all it can at weight 1, the first slot kept at the default), and events
that carry impressions train an UPDATE (tests/unit/test_hrnn.py shows what impressions teach)."""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from support import Server
from test_training import RECIPE, dataset_group, import_dataset, slice_of_ml100k, train

ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "GENRES", "type": "string", "categorical": True},
    {"name": "CREATION_TIMESTAMP", "type": "long"}]})
DAY = 86_400
USER = "259"


def import_items(control: Any, group: str, name: str, created: dict[str, int], to: Path) -> None:
    with open(to, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ITEM_ID", "GENRES", "CREATION_TIMESTAMP"])
        w.writerows((item, "Drama", at) for item, at in created.items())
    import_dataset(control, group, f"{name}-items", "ITEMS", ITEMS, to)


def items_for(runtime: Any, campaign: str, n: int = 10) -> list[str]:
    return [i["itemId"] for i in runtime.get_recommendations(campaignArn=campaign, userId=USER,
                                                             numResults=n)["itemList"]]


def test_exploration_mixes_young_items_in_as_the_campaign_says(embedded_server: Server, unique: str,
                                                               tmp_path: Path) -> None:
    control, runtime = embedded_server.client("personalize"), embedded_server.client("personalize-runtime")
    ratings = slice_of_ml100k(tmp_path / "ml.csv", 20_000)
    with open(ratings) as f:
        rows = list(csv.DictReader(f))
    newest = max(int(r["TIMESTAMP"]) for r in rows)
    counts = Counter(r["ITEM_ID"] for r in rows)
    seen = {r["ITEM_ID"] for r in rows if r["USER_ID"] == USER}
    # five rarely-rated items the user has not seen were "added to the catalogue" days ago; the rest long ago
    fresh = sorted((i for i in counts if i not in seen), key=lambda i: (counts[i], i))[:5]
    created = {i: newest - (2 * DAY if i in fresh else 400 * DAY) for i in counts}
    group = dataset_group(control, unique, ratings)
    import_items(control, group, unique, created, tmp_path / "items.csv")
    solution = control.create_solution(
        name=f"{unique}-up", datasetGroupArn=group, recipeArn=RECIPE + "aws-user-personalization",
        solutionConfig={"algorithmHyperParameters": {"epochs": "3", "hidden_dimension": "64"}})["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")

    def campaign(name: str, config: dict[str, str] | None) -> str:
        kwargs = {} if config is None else {"campaignConfig": {"itemExplorationConfig": config}}
        return control.create_campaign(name=f"{unique}-{name}", **kwargs,
                                       solutionVersionArn=version["solutionVersionArn"])["campaignArn"]

    relevance = campaign("none", {"explorationWeight": "0"})
    explore_all = campaign("all", {"explorationWeight": "1", "explorationItemAgeCutOff": "7"})
    default = campaign("default", None)  # Personalize's defaults: weight 0.3, items up to 30 days old

    plain = items_for(runtime, relevance)
    assert plain == items_for(runtime, relevance) and not set(plain) & set(fresh)
    assert sorted(items_for(runtime, explore_all)[:5]) == sorted(fresh)  # every young item, relevance after
    lists = [items_for(runtime, default) for _ in range(30)]
    assert all(lst[0] == plain[0] and len(set(lst)) == 10 for lst in lists)  # the first slot is relevance's
    assert all(len(set(lst) & set(fresh)) == 3 for lst in lists)  # round(0.3 * 10) slots explore
    assert len({tuple(lst) for lst in lists}) > 1  # and which young items show varies

    with pytest.raises(control.exceptions.InvalidInputException, match="explorationWeight must be between 0"):
        campaign("bad", {"explorationWeight": "2"})


def test_events_with_impressions_train_an_update(embedded_server: Server, unique: str,
                                                 tmp_path: Path) -> None:
    control = embedded_server.client("personalize")
    events = embedded_server.client("personalize-events")
    group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    solution = control.create_solution(
        name=f"{unique}-up", datasetGroupArn=group, recipeArn=RECIPE + "aws-user-personalization",
        solutionConfig={"algorithmHyperParameters": {"epochs": "2", "hidden_dimension": "32"}})["solutionArn"]
    assert train(control, solution)["status"] == "ACTIVE"
    tracker = control.create_event_tracker(name=f"{unique}-t", datasetGroupArn=group)["trackingId"]
    now = time.time()
    for k in range(20):  # item 50 is shown every time and never clicked
        events.put_events(trackingId=tracker, userId=f"u{k}", sessionId=f"s{k}", eventList=[
            {"eventType": "click", "itemId": item, "sentAt": now + i, "impression": [item, "50", "181"]}
            for i, item in enumerate(["1", "7", "100"])])
    update = train(control, solution, "UPDATE")  # reads the archived events' IMPRESSION lists
    assert update["status"] == "ACTIVE", update.get("failureReason")
