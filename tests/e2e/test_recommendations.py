"""Deploy and ask: campaigns and the runtime API through boto3, on a slice of ml-100k."""
from __future__ import annotations

import csv
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import DATASETS, Server
from test_training import RECIPE, ROLE, dataset_group, slice_of_ml100k, train, wait

ITEMS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "TITLE", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    {"name": "RELEASE_YEAR", "type": ["null", "int"]},
    {"name": "CREATION_TIMESTAMP", "type": ["null", "long"]}]})


def deploy(control: Any, group: str, recipe: str, name: str) -> tuple[str, str]:
    solution = control.create_solution(name=name, datasetGroupArn=group,
                                       recipeArn=RECIPE + recipe)["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = control.create_campaign(name=name, solutionVersionArn=version["solutionVersionArn"],
                                       minProvisionedTPS=1)["campaignArn"]
    return campaign, version["solutionVersionArn"]


@pytest.fixture
def deployed(embedded_server: Server, tmp_path: Path) -> dict[str, Any]:
    control = embedded_server.client("personalize")
    group = dataset_group(control, "shop", slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    schema = control.create_schema(name="shop-items", schema=ITEMS)["schemaArn"]
    items = control.create_dataset(name="shop-items", schemaArn=schema, datasetGroupArn=group,
                                   datasetType="ITEMS")["datasetArn"]
    job = control.create_dataset_import_job(jobName="shop-items", datasetArn=items, roleArn=ROLE, dataSource={
        "dataLocation": str(DATASETS / "ml-100k" / "items.csv")})["datasetImportJobArn"]
    assert wait(lambda: control.describe_dataset_import_job(
        datasetImportJobArn=job)["datasetImportJob"])["status"] == "ACTIVE"
    pop, _ = deploy(control, group, "aws-popularity-count", "shop-pop")
    sims, _ = deploy(control, group, "aws-sims", "shop-sims")
    tracker = control.create_event_tracker(name="shop-web", datasetGroupArn=group)["trackingId"]
    return {"control": control, "runtime": embedded_server.client("personalize-runtime"),
            "events": embedded_server.client("personalize-events"), "pop": pop, "sims": sims,
            "tracker": tracker, "group": group}


def test_a_click_stays_recommendable_and_a_filter_on_clicks_leaves_it_out(deployed: dict[str, Any]) -> None:
    control, runtime, events = deployed["control"], deployed["runtime"], deployed["events"]
    first = runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", numResults=10)
    items = [i["itemId"] for i in first["itemList"]]
    assert len(items) == 10 and first["recommendationId"]
    scores = [i["score"] for i in first["itemList"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
    unclicked = control.create_filter(
        name="unclicked", datasetGroupArn=deployed["group"],
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]
    events.put_events(trackingId=deployed["tracker"], userId="259", sessionId="s1", eventList=[
        {"eventType": "click", "itemId": items[0], "sentAt": time.time(),
         "recommendationId": first["recommendationId"]}])
    deadline = time.monotonic() + 5
    while items[0] in [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=deployed["pop"], userId="259", numResults=10, filterArn=unclicked)["itemList"]]:
        assert time.monotonic() < deadline, "the click never reached the filter"
        time.sleep(0.01)
    # as Personalize's campaigns: what the user interacted with is dropped by a filter, never by default
    again = runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", numResults=10)
    assert [i["itemId"] for i in again["itemList"]] == items


def test_related_items_and_ranking(deployed: dict[str, Any]) -> None:
    runtime = deployed["runtime"]
    related = runtime.get_recommendations(campaignArn=deployed["sims"], itemId="50", numResults=5)["itemList"]
    assert len(related) == 5 and "50" not in [i["itemId"] for i in related]
    unknown = runtime.get_recommendations(campaignArn=deployed["sims"], itemId="no-such-item")["itemList"]
    assert len(unknown) == 25  # popular items for an item the model does not know
    ranked = runtime.get_personalized_ranking(campaignArn=deployed["pop"], userId="259",
                                              inputList=["new-item", "50", "181", "1"])["personalizedRanking"]
    assert [i["itemId"] for i in ranked][-1] == "new-item"  # unknown items go last
    assert sorted(i["itemId"] for i in ranked) == ["1", "181", "50", "new-item"]
    # as Personalize's: only the input items get scores, which sum to 1; an unknown item gets 0
    scores = [i["score"] for i in ranked]
    assert sum(scores[:3]) == pytest.approx(1.0, abs=1e-5) and scores[3] == 0.0
    assert scores[:3] == sorted(scores[:3], reverse=True)


def test_bad_runtime_requests(deployed: dict[str, Any]) -> None:
    runtime = deployed["runtime"]
    missing = deployed["pop"].replace("shop-pop", "nope")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.get_recommendations(campaignArn=missing, userId="1")
    for n in (0, 501):
        with pytest.raises(runtime.exceptions.InvalidInputException, match="numResults"):
            runtime.get_recommendations(campaignArn=deployed["pop"], userId="1", numResults=n)
    with pytest.raises(runtime.exceptions.InvalidInputException, match="userId is required"):
        runtime.get_recommendations(campaignArn=deployed["pop"], itemId="1")
    with pytest.raises(runtime.exceptions.InvalidInputException, match="itemId is required"):
        runtime.get_recommendations(campaignArn=deployed["sims"], userId="1")


def genres() -> dict[str, set[str]]:
    with open(DATASETS / "ml-100k" / "items.csv", newline="") as f:
        return {r["ITEM_ID"]: set((r["GENRES"] or "").split("|")) for r in csv.DictReader(f)}


def test_filters_narrow_recommendations(deployed: dict[str, Any]) -> None:
    control, runtime, events = deployed["control"], deployed["runtime"], deployed["events"]
    by_genre = control.create_filter(
        name="by-genre", datasetGroupArn=deployed["group"],
        filterExpression="INCLUDE ItemID WHERE Items.GENRES IN ($GENRES)")["filterArn"]
    got = runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", numResults=20,
                                      filterArn=by_genre, filterValues={"GENRES": '"Horror"'})["itemList"]
    assert len(got) == 20 and all("Horror" in genres()[i["itemId"]] for i in got)
    horror = [i for i, g in genres().items() if "Horror" in g][:3]
    other = [i for i, g in genres().items() if "Horror" not in g][:2]
    ranked = runtime.get_personalized_ranking(campaignArn=deployed["pop"], userId="259",
                                              inputList=[other[0], *horror, other[1], "new-item"],
                                              filterArn=by_genre, filterValues={"GENRES": '"Horror"'})
    ranked = ranked["personalizedRanking"]  # the filter leaves the others out; scores over what is left
    assert sorted(i["itemId"] for i in ranked[:3]) == sorted(horror) and ranked[3]["itemId"] == "new-item"
    assert len(ranked) == 4 and sum(i["score"] for i in ranked[:3]) == pytest.approx(1.0, abs=1e-5)

    not_clicked = control.create_filter(
        name="not-clicked", datasetGroupArn=deployed["group"],
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]
    top = runtime.get_recommendations(campaignArn=deployed["sims"], itemId="50", numResults=5)["itemList"]
    events.put_events(trackingId=deployed["tracker"], userId="u-new", sessionId="s", eventList=[
        {"eventType": "click", "itemId": top[0]["itemId"], "sentAt": time.time()}])
    deadline = time.monotonic() + 5
    while top[0]["itemId"] in [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=deployed["sims"], itemId="50", userId="u-new", numResults=5,
            filterArn=not_clicked)["itemList"]]:
        assert time.monotonic() < deadline, "the click did not reach the filter"
        time.sleep(0.01)

    with pytest.raises(control.exceptions.InvalidInputException, match="column 35"):
        control.create_filter(name="typo", datasetGroupArn=deployed["group"],
                              filterExpression="EXCLUDE ItemID WHERE Items.GENRES INN (\"x\")")
    with pytest.raises(runtime.exceptions.InvalidInputException, match="GENRES"):
        runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", filterArn=by_genre)
    names = [f["name"] for f in control.list_filters(datasetGroupArn=deployed["group"])["Filters"]]
    assert names == ["by-genre", "not-clicked"]


def test_metadata_comes_with_the_items_when_the_campaign_enables_it(deployed: dict[str, Any]) -> None:
    control, runtime = deployed["control"], deployed["runtime"]
    version = control.describe_campaign(campaignArn=deployed["pop"])["campaign"]["solutionVersionArn"]
    shop = control.create_campaign(name="shop-meta", solutionVersionArn=version,
                                   campaignConfig={"enableMetadataWithRecommendations": True})["campaignArn"]
    with open(DATASETS / "ml-100k" / "items.csv", newline="") as f:
        titles = {r["ITEM_ID"]: r["TITLE"] for r in csv.DictReader(f)}
    got = runtime.get_recommendations(campaignArn=shop, userId="259", numResults=5,
                                      metadataColumns={"ITEMS": ["TITLE", "GENRES"]})["itemList"]
    assert len(got) == 5 and all(i["metadata"]["TITLE"] == titles[i["itemId"]] for i in got)
    assert all(i["metadata"]["GENRES"] for i in got)
    ranked = runtime.get_personalized_ranking(campaignArn=shop, userId="259", inputList=["50", "181"],
                                              metadataColumns={"ITEMS": ["TITLE"]})["personalizedRanking"]
    assert {i["metadata"]["TITLE"] for i in ranked} == {titles["50"], titles["181"]}

    bad = runtime.exceptions.InvalidInputException
    for campaign, columns, n, message in [
            (deployed["pop"], {"ITEMS": ["TITLE"]}, 5, "enableMetadataWithRecommendations"),
            (shop, {"ITEMS": ["NOPE"]}, 5, "no column NOPE"),
            (shop, {"USERS": ["AGE"]}, 5, "only ITEMS columns, not USERS"),
            (shop, {"ITEMS": ["TITLE"]}, 51, "at most 50 results")]:
        with pytest.raises(bad, match=message):
            runtime.get_recommendations(campaignArn=campaign, userId="259", numResults=n,
                                        metadataColumns=columns)
    plain = runtime.get_recommendations(campaignArn=shop, userId="259", numResults=3)["itemList"]
    assert all("metadata" not in i for i in plain)


def test_a_promotion_gets_its_share_of_the_list(deployed: dict[str, Any]) -> None:
    control, runtime = deployed["control"], deployed["runtime"]
    horror = control.create_filter(
        name="horror", datasetGroupArn=deployed["group"],
        filterExpression='INCLUDE ItemID WHERE Items.GENRES IN ("Horror")')["filterArn"]
    plain = [i["itemId"] for i in runtime.get_recommendations(
        campaignArn=deployed["pop"], userId="259", numResults=10)["itemList"]]
    got = runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", numResults=10, promotions=[
        {"name": "spooky-week", "percentPromotedItems": 30, "filterArn": horror}])["itemList"]
    promoted = [i["itemId"] for i in got if i.get("promotionName") == "spooky-week"]
    assert len(got) == 10 and len(promoted) == 3 and all("Horror" in genres()[i] for i in promoted)
    rest = [i["itemId"] for i in got if "promotionName" not in i]
    assert rest == [i for i in plain if i not in promoted][:7]  # relevance keeps its order for the rest
    with pytest.raises(runtime.exceptions.InvalidInputException, match="percentPromotedItems"):
        runtime.get_recommendations(campaignArn=deployed["pop"], userId="259", promotions=[
            {"name": "too-much", "percentPromotedItems": 101, "filterArn": horror}])


def test_metrics_name_the_version_each_campaign_serves(deployed: dict[str, Any],
                                                       embedded_server: Server) -> None:
    control = deployed["control"]

    def served() -> dict[str, str]:
        text = httpx.get(embedded_server.url + "/metrics", timeout=5).text
        return {s.labels["campaign"]: s.labels["solution_version"]
                for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "opz_api_campaign_solution_version_info" and s.value == 1}

    def version_of(campaign: str) -> str:
        arn = control.describe_campaign(campaignArn=campaign)["campaign"]["solutionVersionArn"]
        return arn.split(":solution/")[1]  # the solution and the version's id, never an ARN

    assert served() == {"shop-pop": version_of(deployed["pop"]), "shop-sims": version_of(deployed["sims"])}
    version = control.describe_campaign(campaignArn=deployed["pop"])["campaign"]["solutionVersionArn"]
    solution = control.describe_solution_version(solutionVersionArn=version)["solutionVersion"]["solutionArn"]
    newer = train(control, solution)["solutionVersionArn"]
    control.update_campaign(campaignArn=deployed["pop"], solutionVersionArn=newer)
    assert served()["shop-pop"] == version_of(deployed["pop"]) == newer.split(":solution/")[1]
    control.delete_campaign(campaignArn=deployed["sims"])
    assert set(served()) == {"shop-pop"}


def test_interaction_filters_see_bulk_imported_event_types(embedded_server: Server, tmp_path: Path) -> None:
    """Issue 17, 6 and 7: user 259's first six ratings are imported as watches and the solution
    trains on ratings alone; a "watched" shelf still shows those six, as Personalize's did, and
    a "watch again" answer (no filter) keeps what the user interacted with."""
    control = embedded_server.client("personalize")
    runtime = embedded_server.client("personalize-runtime")
    lines = slice_of_ml100k(tmp_path / "ml.csv", 20_000).read_text().splitlines(keepends=True)
    mine = [n for n, line in enumerate(lines) if line.startswith("259,")]
    watched = {lines[n].split(",")[1] for n in mine[:6]}
    rated = {lines[n].split(",")[1] for n in mine[6:]}
    for n in mine[:6]:
        lines[n] = lines[n].replace(",rating,", ",Watch,")
    (tmp_path / "ml.csv").write_text("".join(lines))
    group = dataset_group(control, "movies", tmp_path / "ml.csv")
    solution = control.create_solution(name="movies-pop", datasetGroupArn=group, eventType="rating",
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    campaign = control.create_campaign(name="movies", solutionVersionArn=version["solutionVersionArn"],
                                       minProvisionedTPS=1)["campaignArn"]

    def shelf(user: str, expression: str | None = None, n: int = 25) -> list[str]:
        extra = {} if expression is None else {"filterArn": control.create_filter(
            name=f"f{uuid.uuid4().hex[:8]}", datasetGroupArn=group, filterExpression=expression)["filterArn"]}
        return [i["itemId"] for i in runtime.get_recommendations(
            campaignArn=campaign, userId=user, numResults=n, **extra)["itemList"]]

    assert set(shelf("259", 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")')) == watched
    assert set(shelf("259", 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")', 50)) == watched | rated
    unwatched = shelf("259", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")')
    assert len(unwatched) == 25 and not watched & set(unwatched)
    plain = shelf("259")
    assert plain == shelf("someone-new") and (watched | rated) & set(plain)  # nothing dropped by default

    events = embedded_server.client("personalize-events")
    tracker = control.create_event_tracker(name="movies-web", datasetGroupArn=group)["trackingId"]
    events.put_events(trackingId=tracker, userId="259", sessionId="s", eventList=[
        {"eventType": "watch", "itemId": plain[0], "sentAt": time.time()}])
    include = control.create_filter(name="watched", datasetGroupArn=group, filterExpression=(
        'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("watch")'))["filterArn"]
    deadline = time.monotonic() + 5
    while {i["itemId"] for i in runtime.get_recommendations(
            campaignArn=campaign, userId="259", numResults=25, filterArn=include)["itemList"]} != \
            watched | {plain[0]}:
        assert time.monotonic() < deadline, "the streamed watch never joined the imported ones"
        time.sleep(0.01)
