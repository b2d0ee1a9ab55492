"""Domain dataset groups and recommenders through unchanged boto3: a video site and a shop pick
use cases, not recipes.

The video site creates a VIDEO_ON_DEMAND dataset group, is held to the domain's schemas, imports
its watches and clicks and its catalogue, and creates a recommender per use case. Each trains
by itself and answers GetRecommendations by its ARN: top picks that leave out what the user
watched (streamed watches too), videos watched with X, more like X (a video nobody watched yet
has neighbours by its genres), the most watched, what is trending. Stopped, a recommender
answers nothing until started; updated, it retrains; deleted, it is gone. The shop does the
same in ECOMMERCE: best sellers are the most bought, frequently bought together the items of
X's baskets, and neither what customers also viewed nor what is recommended for a customer is
what that customer bought.
"""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support import ROOT, Server, api_stack, write_csv
from test_training import RECIPE, ROLE, wait

BUNDLED = ROOT / "training" / "datasets" / "ml-latest-small"
VOD, ECOMMERCE = "VIDEO_ON_DEMAND", "ECOMMERCE"
ROWS = 4_000
NEW_VIDEO = "new-video"  # in the catalogue, watched by nobody yet
INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"}]})
VIDEOS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "GENRES", "type": "string", "categorical": True},
    {"name": "CREATION_TIMESTAMP", "type": "long"}]})
PRODUCTS = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"}, {"name": "PRICE", "type": "float"},
    {"name": "CATEGORY_L1", "type": "string", "categorical": True}]})


def schema_text(name: str, *fields: tuple[str, str]) -> str:
    return json.dumps({"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]})


def refused(code: str, call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code, caught.value.response
    return caught.value.response["Error"]["Message"]


def ratings(rows: int) -> list[dict[str, str]]:
    with open(BUNDLED / "interactions.csv") as f:
        return [row for _, row in zip(range(rows), csv.DictReader(f), strict=False)]



def watches(tmp_path: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    """ml-latest-small's first ratings as a video site's events (a rating of 3.5 or more is a
    Watch, the rest Clicks) and its movies as the catalogue, plus one video nobody watched that
    shares its genres with the first rated one."""
    events = [{"USER_ID": r["USER_ID"], "ITEM_ID": r["ITEM_ID"], "TIMESTAMP": r["TIMESTAMP"],
               "EVENT_TYPE": "Watch" if float(r["EVENT_VALUE"]) >= 3.5 else "Click"} for r in ratings(ROWS)]
    with open(BUNDLED / "items.csv") as f:
        movies = [{"ITEM_ID": m["ITEM_ID"], "GENRES": m["GENRES"],
                   "CREATION_TIMESTAMP": 0 if not m["YEAR"] else int(m["YEAR"]) * 31_556_952 - 62_167_219_200}
                  for m in csv.DictReader(f)]
    first = next(m for m in movies if m["ITEM_ID"] == events[0]["ITEM_ID"])
    movies.append({"ITEM_ID": NEW_VIDEO, "GENRES": first["GENRES"], "CREATION_TIMESTAMP": 1_700_000_000})
    return (write_csv(tmp_path / "watches.csv", events),
            write_csv(tmp_path / "videos.csv", movies), events)


def purchases(tmp_path: Path) -> tuple[Path, Path, list[dict[str, str]]]:
    """The same ratings as a shop's events: every rating a View, a rating of 4 or more a
    Purchase too; the first genre as the category and a stand-in price."""
    events = []
    for r in ratings(ROWS):
        event = {"USER_ID": r["USER_ID"], "ITEM_ID": r["ITEM_ID"], "TIMESTAMP": r["TIMESTAMP"]}
        events.append(event | {"EVENT_TYPE": "View"})
        if float(r["EVENT_VALUE"]) >= 4:
            events.append(event | {"EVENT_TYPE": "Purchase"})
    with open(BUNDLED / "items.csv") as f:
        products = [{"ITEM_ID": m["ITEM_ID"], "CATEGORY_L1": m["GENRES"].split("|")[0],
                     "PRICE": 5 + int(m["ITEM_ID"]) % 20} for m in csv.DictReader(f)]
    return (write_csv(tmp_path / "shop.csv", events),
            write_csv(tmp_path / "products.csv", products), events)


def domain_group(control: Any, name: str, domain: str, items_schema: str, events: Path, items: Path) -> str:
    """A domain dataset group with its interactions and items imported, through its domain's schemas."""
    group = control.create_dataset_group(name=name, domain=domain)["datasetGroupArn"]
    for kind, schema, path in (("INTERACTIONS", INTERACTIONS, events), ("ITEMS", items_schema, items)):
        schema_arn = control.create_schema(name=f"{name}-{kind}", schema=schema, domain=domain)["schemaArn"]
        dataset = control.create_dataset(name=f"{name}-{kind}", schemaArn=schema_arn, datasetGroupArn=group,
                                         datasetType=kind)["datasetArn"]
        job = control.create_dataset_import_job(jobName=f"{name}-{kind}", datasetArn=dataset, roleArn=ROLE,
                                                dataSource={"dataLocation": str(path)})["datasetImportJobArn"]
        assert wait(lambda job=job: control.describe_dataset_import_job(
            datasetImportJobArn=job)["datasetImportJob"])["status"] == "ACTIVE"
    return group


def recommenders(control: Any, group: str, prefix: str, use_cases: list[str]) -> dict[str, str]:
    """A recommender per use case, each waited for until ACTIVE."""
    arns = {case: control.create_recommender(name=f"{prefix}-{case}", datasetGroupArn=group,
                                             recipeArn=RECIPE + case)["recommenderArn"] for case in use_cases}
    for case, arn in arns.items():
        described = wait(lambda arn=arn: control.describe_recommender(recommenderArn=arn)["recommender"], 600)
        assert described["status"] == "ACTIVE", (case, described)
    return arns


def items(answer: dict[str, Any]) -> list[str]:
    return [i["itemId"] for i in answer["itemList"]]


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Server]:
    """The API; distributed, with a stream worker keeping the session state."""
    yield from api_stack(request, tmp_path, unique, request.param == "distributed")


def test_a_domain_group_takes_its_domains_schemas_and_recipes_only(embedded_server: Server) -> None:
    control = embedded_server.client("personalize")
    group = control.create_dataset_group(name="videos", domain=VOD)["datasetGroupArn"]
    assert control.describe_dataset_group(datasetGroupArn=group)["datasetGroup"]["domain"] == VOD
    custom = control.create_schema(name="custom-items", schema=VIDEOS)["schemaArn"]
    assert "custom domain" in refused("InvalidInputException", lambda: control.create_dataset(
        name="items", schemaArn=custom, datasetGroupArn=group, datasetType="ITEMS"))
    no_genres = schema_text("Items", ("ITEM_ID", "string"), ("CREATION_TIMESTAMP", "long"),
                            ("RATING", "float"))
    no_type = schema_text("Interactions", ("USER_ID", "string"), ("ITEM_ID", "string"),
                          ("TIMESTAMP", "long"))
    for name, text, kind, missing in (("no-genres", no_genres, "ITEMS", "GENRES"),
                                      ("no-type", no_type, "INTERACTIONS", "EVENT_TYPE")):
        bad = control.create_schema(name=name, schema=text, domain=VOD)["schemaArn"]
        assert missing in refused("InvalidInputException", lambda bad=bad, kind=kind: control.create_dataset(
            name="refused", schemaArn=bad, datasetGroupArn=group, datasetType=kind))
    products = control.create_schema(name="products", schema=PRODUCTS, domain=ECOMMERCE)["schemaArn"]
    assert "ECOMMERCE domain" in refused("InvalidInputException", lambda: control.create_dataset(
        name="items", schemaArn=products, datasetGroupArn=group, datasetType="ITEMS"))

    # recommenders: a use case of the group's domain, once it has the datasets that use case reads
    assert "INTERACTIONS" in refused("InvalidInputException", lambda: control.create_recommender(
        name="picks", datasetGroupArn=group, recipeArn=RECIPE + "aws-vod-top-picks"))
    events = control.create_schema(name="vod-events", schema=INTERACTIONS, domain=VOD)["schemaArn"]
    control.create_dataset(name="events", schemaArn=events, datasetGroupArn=group, datasetType="INTERACTIONS")
    assert "ITEMS" in refused("InvalidInputException", lambda: control.create_recommender(
        name="more", datasetGroupArn=group, recipeArn=RECIPE + "aws-vod-more-like-x"))
    for recipe in ("aws-ecomm-recommended-for-you", "aws-hrnn", "aws-nonsense"):
        message = refused("InvalidInputException", lambda recipe=recipe: control.create_recommender(
            name="picks", datasetGroupArn=group, recipeArn=RECIPE + recipe))
        assert "aws-vod-top-picks" in message
    refused("InvalidInputException", lambda: control.create_recommender(
        name="picks", datasetGroupArn=group, recipeArn=RECIPE + "aws-vod-most-popular",
        recommenderConfig={"itemExplorationConfig": {"explorationWeight": "0.5"}}))
    refused("InvalidInputException", lambda: control.create_recommender(
        name="picks", datasetGroupArn=group, recipeArn=RECIPE + "aws-vod-top-picks",
        recommenderConfig={"trainingDataConfig": {"excludedDatasetColumns": {"ITEMS": ["GENRES"]}}}))
    shop = control.create_dataset_group(name="custom")["datasetGroupArn"]
    assert "no domain" in refused("InvalidInputException", lambda: control.create_recommender(
        name="picks", datasetGroupArn=shop, recipeArn=RECIPE + "aws-vod-top-picks"))
    assert "CreateRecommender" in refused("InvalidInputException", lambda: control.create_solution(
        name="picks", datasetGroupArn=group, recipeArn=RECIPE + "aws-vod-top-picks"))
    listed = control.list_recipes(domain=VOD)["recipes"]
    assert sorted(r["name"] for r in listed) == ["aws-vod-because-you-watched-x", "aws-vod-more-like-x",
                                                 "aws-vod-most-popular", "aws-vod-top-picks",
                                                 "aws-vod-trending-now"]


def test_a_video_sites_recommenders_train_answer_stop_retrain_and_go(
        stack: Server, tmp_path: Path, unique: str) -> None:
    server = stack
    control, runtime = server.client("personalize"), server.client("personalize-runtime")
    events_path, videos, events = watches(tmp_path)
    group = domain_group(control, unique, VOD, VIDEOS, events_path, videos)
    arns = recommenders(control, group, unique, ["aws-vod-top-picks", "aws-vod-because-you-watched-x",
                                                 "aws-vod-more-like-x", "aws-vod-most-popular",
                                                 "aws-vod-trending-now"])
    picks = arns["aws-vod-top-picks"]
    described = control.describe_recommender(recommenderArn=picks)["recommender"]
    assert described["recipeArn"] == RECIPE + "aws-vod-top-picks" and described["datasetGroupArn"] == group
    assert described["recommenderConfig"]["minRecommendationRequestsPerSecond"] == 1
    assert 0 <= described["modelMetrics"]["normalized_discounted_cumulative_gain_at_10"] <= 1
    listed = control.list_recommenders(datasetGroupArn=group)["recommenders"]
    assert sorted(r["recommenderArn"] for r in listed) == sorted(arns.values())
    assert {r["status"] for r in listed} == {"ACTIVE"}

    # top picks leave out what the user watched, also what it watches now
    user = "192"  # 16 watches among 22 ratings
    watched = {e["ITEM_ID"] for e in events if e["USER_ID"] == user and e["EVENT_TYPE"] == "Watch"}
    top = items(runtime.get_recommendations(recommenderArn=picks, userId=user, numResults=50))
    assert len(top) == 50 and not watched & set(top)
    refused("InvalidInputException", lambda: runtime.get_recommendations(recommenderArn=picks))
    refused("InvalidInputException", lambda: runtime.get_recommendations(
        recommenderArn=picks, campaignArn=picks, userId=user))
    tracker = control.create_event_tracker(name=unique, datasetGroupArn=group)["trackingId"]
    sender = server.client("personalize-events")
    sender.put_events(trackingId=tracker, userId=user, sessionId="s1",
                      eventList=[{"eventType": "Watch", "itemId": top[0], "sentAt": time.time()}])
    deadline = time.monotonic() + 30
    while top[0] in items(runtime.get_recommendations(recommenderArn=picks, userId=user, numResults=50)):
        assert time.monotonic() < deadline, "a streamed Watch still recommended"
        time.sleep(0.2)

    # videos watched with X, more like X, the most watched, what trends
    x = next(e["ITEM_ID"] for e in events if e["USER_ID"] == user and e["EVENT_TYPE"] == "Watch")
    because = items(runtime.get_recommendations(recommenderArn=arns["aws-vod-because-you-watched-x"],
                                                itemId=x, userId=user, numResults=10))
    assert because and x not in because and not watched & set(because)
    refused("InvalidInputException", lambda: runtime.get_recommendations(
        recommenderArn=arns["aws-vod-because-you-watched-x"], userId=user))
    with open(videos) as f:
        genres = {m["ITEM_ID"]: set(m["GENRES"].split("|")) for m in csv.DictReader(f)}
    like_new = items(runtime.get_recommendations(recommenderArn=arns["aws-vod-more-like-x"],
                                                 itemId=NEW_VIDEO, userId="nobody", numResults=10))
    # nobody watched it: its neighbours are by genres, first those of the very same ones
    assert len(like_new) == 10 and genres[like_new[0]] == genres[NEW_VIDEO]
    assert all(genres[i] & genres[NEW_VIDEO] for i in like_new)
    counts = Counter(e["ITEM_ID"] for e in events if e["EVENT_TYPE"] == "Watch")
    popular = items(runtime.get_recommendations(recommenderArn=arns["aws-vod-most-popular"], userId="nobody",
                                                numResults=5))
    assert [counts[i] for i in popular] == sorted(counts.values(), reverse=True)[:5]
    trending = arns["aws-vod-trending-now"]
    assert len(items(runtime.get_recommendations(recommenderArn=trending, numResults=5))) == 5

    # trending now follows the stream between trainings: a video watched 30 times in the last
    # whole hour, and 60 times in this one (should the hour turn meanwhile), trends first
    rising = min(counts, key=lambda i: (counts[i], i))
    hour = 3600 * (time.time() // 3600)
    for n, sent_at in enumerate([hour - 1800] * 30 + [time.time()] * 60):
        sender.put_events(trackingId=tracker, userId=f"fan{n}", sessionId=f"f{n}",
                          eventList=[{"eventType": "Watch", "itemId": rising, "sentAt": sent_at}])
    deadline = time.monotonic() + 60  # the stream applies them; the API reads its counters every 10 s
    while items(runtime.get_recommendations(recommenderArn=trending, numResults=1)) != [rising]:
        assert time.monotonic() < deadline, "a rising video is not trending"
        time.sleep(0.5)

    # stopped, it answers nothing until started again
    control.stop_recommender(recommenderArn=picks)
    assert control.describe_recommender(recommenderArn=picks)["recommender"]["status"] == "INACTIVE"
    refused("ResourceInUseException", lambda: control.stop_recommender(recommenderArn=picks))
    time.sleep(1.2)  # the runtime reads a recommender's row at most a second old
    assert "INACTIVE" in refused("InvalidInputException", lambda: runtime.get_recommendations(
        recommenderArn=picks, userId=user))
    control.start_recommender(recommenderArn=picks)
    time.sleep(1.2)
    assert items(runtime.get_recommendations(recommenderArn=picks, userId=user, numResults=5))

    # updated: its throughput at once; what training reads, by retraining while it still answers
    control.update_recommender(recommenderArn=picks,
                               recommenderConfig={"minRecommendationRequestsPerSecond": 5})
    assert control.describe_recommender(recommenderArn=picks)["recommender"]["recommenderConfig"][
        "minRecommendationRequestsPerSecond"] == 5
    control.update_recommender(recommenderArn=picks, recommenderConfig={
        "trainingDataConfig": {"excludedDatasetColumns": {"ITEMS": ["GENRES"]}}})
    described = control.describe_recommender(recommenderArn=picks)["recommender"]
    assert described["status"] == "ACTIVE"
    assert described["latestRecommenderUpdate"]["status"] in ("CREATE PENDING", "CREATE IN_PROGRESS")
    assert items(runtime.get_recommendations(recommenderArn=picks, userId=user, numResults=5))
    assert wait(lambda: control.describe_recommender(recommenderArn=picks)["recommender"][
        "latestRecommenderUpdate"], 600)["status"] == "ACTIVE"

    # deleted, it is gone; the group goes once its recommenders have
    assert "recommenders" in refused("ResourceInUseException", lambda: control.delete_dataset_group(
        datasetGroupArn=group))
    control.delete_recommender(recommenderArn=picks)
    refused("ResourceNotFoundException", lambda: control.describe_recommender(recommenderArn=picks))
    time.sleep(1.2)
    refused("ResourceNotFoundException", lambda: runtime.get_recommendations(
        recommenderArn=picks, userId=user))


def test_a_shops_best_sellers_and_baskets(embedded_server: Server, tmp_path: Path) -> None:
    control, runtime = embedded_server.client("personalize"), embedded_server.client("personalize-runtime")
    events_path, products, events = purchases(tmp_path)
    group = domain_group(control, "shop", ECOMMERCE, PRODUCTS, events_path, products)
    arns = recommenders(control, group, "shop", ["aws-ecomm-popular-items-by-purchases",
                                                 "aws-ecomm-popular-items-by-views",
                                                 "aws-ecomm-frequently-bought-together",
                                                 "aws-ecomm-customers-who-viewed-x-also-viewed",
                                                 "aws-ecomm-recommended-for-you"])
    for case, kind in (("aws-ecomm-popular-items-by-purchases", "Purchase"),
                       ("aws-ecomm-popular-items-by-views", "View")):
        counts = Counter(e["ITEM_ID"] for e in events if e["EVENT_TYPE"] == kind)
        best = items(runtime.get_recommendations(recommenderArn=arns[case], userId="nobody", numResults=5))
        assert [counts[i] for i in best] == sorted(counts.values(), reverse=True)[:5], case

    # bought together: what was bought in X's baskets (one user's purchases within 30 minutes)
    bought = sorted((e for e in events if e["EVENT_TYPE"] == "Purchase"),
                    key=lambda e: (e["USER_ID"], int(e["TIMESTAMP"])))
    baskets: list[set[str]] = []
    for before, e in zip([None, *bought], bought, strict=False):
        if before is None or before["USER_ID"] != e["USER_ID"] or \
                int(e["TIMESTAMP"]) - int(before["TIMESTAMP"]) > 1800:
            baskets.append(set())
        baskets[-1].add(e["ITEM_ID"])
    x = Counter(i for b in baskets if len(b) > 1 for i in b).most_common(1)[0][0]
    with_x = set().union(*(b for b in baskets if x in b)) - {x}
    together = items(runtime.get_recommendations(recommenderArn=arns["aws-ecomm-frequently-bought-together"],
                                                 itemId=x, numResults=5))
    assert together[0] in with_x and x not in together

    # customers who viewed X also viewed: never what this customer bought
    user = bought[0]["USER_ID"]
    mine = {e["ITEM_ID"] for e in bought if e["USER_ID"] == user}
    viewed = items(runtime.get_recommendations(
        recommenderArn=arns["aws-ecomm-customers-who-viewed-x-also-viewed"], itemId=x, userId=user,
        numResults=50))
    assert viewed and not mine & set(viewed)
    for_you = items(runtime.get_recommendations(recommenderArn=arns["aws-ecomm-recommended-for-you"],
                                                userId=user, numResults=50))
    assert len(for_you) == 50 and not mine & set(for_you)
