"""Implicit impressions: a click that names the recommendationId it came from, without an impression
list, is stored (and seen by downstream consumers) with the items that recommendation showed."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from support import Server
from test_training import RECIPE, dataset_group, slice_of_ml100k, train


def test_a_click_on_a_recommendation_carries_what_was_shown(mode_env: dict[str, str], tmp_path: Path,
                                                            unique: str) -> None:
    server = Server(tmp_path / "data", env=mode_env).start()
    try:
        control, runtime = server.client("personalize"), server.client("personalize-runtime")
        group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "ml.csv", 5_000))
        solution = control.create_solution(name=unique, datasetGroupArn=group,
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        campaign = control.create_campaign(name=unique, solutionVersionArn=train(control, solution)[
            "solutionVersionArn"])["campaignArn"]
        tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
        shown = runtime.get_recommendations(campaignArn=campaign, userId="1", numResults=30)
        ranked = runtime.get_personalized_ranking(campaignArn=campaign, userId="1",
                                                  inputList=["50", "1", "100"])
        row = [i["itemId"] for i in shown["itemList"]]
        now = time.time()
        events = server.client("personalize-events")
        events.put_events(trackingId=tracker, userId="1", sessionId="s", eventList=[
            {"eventId": "implicit", "eventType": "click", "itemId": row[3], "sentAt": now,
             "recommendationId": shown["recommendationId"]},
            {"eventId": "explicit", "eventType": "click", "itemId": row[4], "sentAt": now + 1,
             "recommendationId": shown["recommendationId"], "impression": [row[4], "elsewhere"]},
            {"eventId": "forgotten", "eventType": "click", "itemId": "7", "sentAt": now + 2,
             "recommendationId": "RID-not-one-of-ours"},
            {"eventId": "ranked", "eventType": "click", "itemId": "100", "sentAt": now + 3,
             "recommendationId": ranked["recommendationId"]}])
    finally:
        server.stop()
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "stream", "tail", "--dataset-group", unique,
         "--group", f"{unique}-analytics", "--max-events", "4", "--idle-timeout", "60",
         "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=120, env={**server.env})
    assert out.returncode == 0, out.stderr[-3000:]
    impressions = {r["event_id"]: r["impression"] for r in map(json.loads, out.stdout.splitlines())}
    assert impressions == {
        "implicit": row[:25],  # PutEvents' impression list holds 25 items: the top of the row
        "explicit": [row[4], "elsewhere"],  # what the client says it showed wins
        "forgotten": [],
        "ranked": [i["itemId"] for i in ranked["personalizedRanking"]]}
