"""The v2 recipes through unchanged boto3: a video site adds two videos to its catalogue that no
one has watched yet, trains aws-user-personalization-v2 and aws-personalized-ranking-v2, and
each user is offered the new video of the genre it watches, before anyone has clicked it. Then
it adds more videos with PutItems, one described only in words, and they are offered at once,
with no retraining, under a filter too."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from support import Server, write_csv
from test_training import RECIPE, import_dataset, train

INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}]})
ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    {"name": "DESCRIPTION", "type": ["null", "string"], "textual": True}]})
GENRES = {"comedy": [f"c{i}" for i in range(10)], "horror": [f"h{i}" for i in range(10)]}
NEW = {"comedy": "c-new", "horror": "h-new"}
WORDS = {"comedy": ["friends", "laugh", "wedding", "party", "silly"],
         "horror": ["night", "fear", "blood", "haunted", "scream"]}


def fans(tmp_path: Path) -> tuple[Path, Path]:
    """300 users who each watch 6 videos of one genre; the catalogue has one new video per genre."""
    rng = np.random.default_rng(0)
    rows = [{"USER_ID": f"{genre}-{u}", "ITEM_ID": item, "TIMESTAMP": 1_700_000_000 + 100_000 * u + 60 * k}
            for u in range(300) for genre in ["comedy" if u % 2 else "horror"]
            for k, item in enumerate(rng.permutation(GENRES[genre])[:6])]
    catalogue = [{"ITEM_ID": item, "GENRES": genre, "DESCRIPTION": described(genre, rng)}
                 for genre, items in GENRES.items() for item in items]
    catalogue += [{"ITEM_ID": item, "GENRES": genre, "DESCRIPTION": described(genre, rng)}
                  for genre, item in NEW.items()]
    return write_csv(tmp_path / "watches.csv", rows), write_csv(tmp_path / "videos.csv", catalogue)


def described(genre: str, rng: np.random.Generator) -> str:
    """A few words of the genre's, among words every description might have."""
    return "a film about " + " and ".join(rng.permutation(WORDS[genre])[:3])


def offered(runtime: Any, campaign: str, user: str, **asked: Any) -> Callable[[], list[str]]:
    return lambda: [i["itemId"] for i in runtime.get_recommendations(
        campaignArn=campaign, userId=user, numResults=12, **asked)["itemList"]]


def eventually(read: Callable[[], list[str]], wanted: str, timeout: float = 30.0) -> list[str]:
    """`read()` once it holds `wanted` (a PutItems reaches the dataset within moments)."""
    deadline = time.monotonic() + timeout
    while wanted not in (got := read()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return got


def test_new_videos_are_offered_by_their_genre_before_anyone_watched_them(
        embedded_server: Server, tmp_path: Path) -> None:
    control, runtime = embedded_server.client("personalize"), embedded_server.client("personalize-runtime")
    watches, videos = fans(tmp_path)
    group = control.create_dataset_group(name="v2")["datasetGroupArn"]
    import_dataset(control, group, "v2-watches", "INTERACTIONS", INTERACTIONS, watches)
    import_dataset(control, group, "v2-videos", "ITEMS", ITEMS, videos)
    campaigns = {}
    for recipe in ("aws-user-personalization-v2", "aws-personalized-ranking-v2"):
        solution = control.create_solution(name=recipe, datasetGroupArn=group,
                                           recipeArn=RECIPE + recipe)["solutionArn"]
        version = train(control, solution)
        assert version["status"] == "ACTIVE", version
        campaigns[recipe] = control.create_campaign(
            name=recipe, solutionVersionArn=version["solutionVersionArn"])["campaignArn"]

    for user, genre, other in (("comedy-1", "comedy", "horror"), ("horror-0", "horror", "comedy")):
        ranked = runtime.get_personalized_ranking(campaignArn=campaigns["aws-personalized-ranking-v2"],
                                                  userId=user, inputList=[NEW[other], NEW[genre]])
        assert [i["itemId"] for i in ranked["personalizedRanking"]] == [NEW[genre], NEW[other]]
        listed = [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=campaigns["aws-user-personalization-v2"], userId=user, numResults=12)["itemList"]]
        assert NEW[genre] in listed
        assert NEW[other] not in listed or listed.index(NEW[other]) > listed.index(NEW[genre])

    # the catalogue grows after training: each video is offered to its genre's fans at once
    items = next(d["datasetArn"] for d in control.list_datasets(datasetGroupArn=group)["datasets"]
                 if d["datasetType"] == "ITEMS")
    embedded_server.client("personalize-events").put_items(datasetArn=items, items=[
        {"itemId": "c-later", "properties": json.dumps({"genres": "comedy"})},
        {"itemId": "h-later", "properties": json.dumps({"description": "haunted night of fear"})}])
    user_personalization = campaigns["aws-user-personalization-v2"]
    comedy_fan = eventually(offered(runtime, user_personalization, "comedy-1"), "c-later")
    horror_fan = eventually(offered(runtime, user_personalization, "horror-0"), "h-later")
    assert "c-later" in comedy_fan and "h-later" not in comedy_fan[:comedy_fan.index("c-later") + 1]
    assert "h-later" in horror_fan and "c-later" not in horror_fan[:horror_fan.index("h-later") + 1]
    ranked = runtime.get_personalized_ranking(campaignArn=campaigns["aws-personalized-ranking-v2"],
                                              userId="horror-0", inputList=["c-later", "h-later"])
    assert [i["itemId"] for i in ranked["personalizedRanking"]] == ["h-later", "c-later"]
    comedies = control.create_filter(name="comedies", datasetGroupArn=group,
                                     filterExpression='INCLUDE ItemID WHERE Items.GENRES IN ("comedy")')
    filtered = offered(runtime, user_personalization, "horror-0", filterArn=comedies["filterArn"])()
    assert "c-later" in filtered and "h-later" not in filtered
