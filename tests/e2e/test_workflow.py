"""The whole Personalize workflow through the three boto3 clients, embedded and distributed:
import, train HRNN, deploy, recommend, send clicks, see the recommendations change, rank
a list, filter, retrain with UPDATE and swap the campaign to it under load."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import Server, api_stack
from test_training import RECIPE, dataset_group, slice_of_ml100k, train

from stream.session import SessionState
from stream.stores import redis_stores, sqlite_stores

FAST = {"epochs": "3", "hidden_dimension": "64"}  # a small model: the test is about the workflow


@pytest.fixture(params=["embedded", "distributed"])
def server(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Server]:
    yield from api_stack(request, tmp_path, unique, distributed=request.param == "distributed")


def stored_state(server: Server, group: str, user: str) -> SessionState | None:
    """The user's session state as the stream workers stored it (Redis, or embedded SQLite)."""
    url = server.env.get("OPZ_REDIS_URL")
    store = redis_stores(url, server.env["OPZ_REDIS_PREFIX"]) if url \
        else sqlite_stores(server.data_dir / "sessions.db")

    async def read() -> SessionState | None:
        await store.start()
        try:
            return (await store.sessions.load([(group, user)]))[0][0]
        finally:
            await store.close()
    return asyncio.run(read())


def top(runtime: Any, campaign: str, user: str, n: int = 10, **request: Any) -> list[str]:
    return [i["itemId"] for i in runtime.get_recommendations(campaignArn=campaign, userId=user,
                                                             numResults=n, **request)["itemList"]]


def test_import_train_deploy_recommend_click_update(server: Server, unique: str, tmp_path: Path) -> None:
    control, runtime = server.client("personalize"), server.client("personalize-runtime")
    events = server.client("personalize-events")
    group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    solution = control.create_solution(name=f"{unique}-hrnn", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-hrnn",
                                       solutionConfig={"algorithmHyperParameters": FAST})["solutionArn"]
    full = train(control, solution)
    assert full["status"] == "ACTIVE", full.get("failureReason")
    used = full["tunedHPOParams"]["algorithmHyperParameters"]  # what the training ran with, resolved
    assert (used["epochs"], used["hidden_dimension"], used["learning_rate"]) == ("3", "64", "0.01")
    campaign = control.create_campaign(name=f"{unique}-c", solutionVersionArn=full["solutionVersionArn"],
                                       minProvisionedTPS=1)["campaignArn"]
    tracker = control.create_event_tracker(name=f"{unique}-t", datasetGroupArn=group)["trackingId"]

    # a user from the import gets personal recommendations; a stranger gets popular ones
    before = top(runtime, campaign, "259")
    assert len(before) == 10 and before != top(runtime, campaign, "someone-new")

    # clicks change the next answer within moments (and a filter on clicks sees them)
    clicked = control.create_filter(
        name=f"{unique}-clicked", datasetGroupArn=group,
        filterExpression='INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]
    clicks = ["172", "173", "174"]
    now = time.time()
    events.put_events(trackingId=tracker, userId="259", sessionId="web-1", eventList=[
        {"eventType": "click", "itemId": item, "sentAt": now + i} for i, item in enumerate(clicks)])
    # a stream worker may apply the three clicks one at a time: wait until all have landed
    deadline = time.monotonic() + 30
    while (after := top(runtime, campaign, "259")) == before or \
            sorted(top(runtime, campaign, "259", filterArn=clicked)) != clicks:
        assert time.monotonic() < deadline, f"the clicks never all reached the recommendations: {after}"
        time.sleep(0.02)

    # the stream workers keep the user's HRNN state under the deployed version from here on
    version, k = full["solutionVersionArn"], 0
    while (state := stored_state(server, unique, "259")) is None or state.model != version:
        assert time.monotonic() < deadline + 30, "the workers never kept 259's state under the model"
        k += 1
        events.put_events(trackingId=tracker, userId="259", sessionId="web-1", eventList=[
            {"eventType": "click", "itemId": "175", "sentAt": now + 10 + k}])
        time.sleep(0.5)
    assert len(state.h) == 2 * 64 + 1  # h_session, h_user (hidden_dimension 64), last event time
    assert len(top(runtime, campaign, "259")) == 10  # served from that state

    ranked = runtime.get_personalized_ranking(campaignArn=campaign, userId="259",
                                              inputList=["not-an-item", *before[:5]])["personalizedRanking"]
    assert sorted(i["itemId"] for i in ranked[:5]) == sorted(before[:5])
    assert ranked[-1]["itemId"] == "not-an-item"
    # a softmax over the five known input items only (Personalize's ranking scores sum to 1)
    assert sum(i["score"] for i in ranked[:5]) == pytest.approx(1.0, abs=1e-5) and ranked[-1]["score"] == 0.0
    no_clicked = control.create_filter(
        name=f"{unique}-f", datasetGroupArn=group,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')
    filtered = runtime.get_recommendations(campaignArn=campaign, userId="259", numResults=50,
                                           filterArn=no_clicked["filterArn"])["itemList"]
    assert len(filtered) == 50 and not set(clicks) & {i["itemId"] for i in filtered}

    # retrain with UPDATE and swap the campaign to it while requests keep coming
    arn = control.create_solution_version(solutionArn=solution, trainingMode="UPDATE")["solutionVersionArn"]
    watched = subprocess.run([sys.executable, "-m", "serving.cli", "solution-version", "wait", arn,
                              "--endpoint", server.url], capture_output=True, text=True, timeout=300)
    # the command returns once the version is done (a fast UPDATE may finish before its first poll)
    assert watched.returncode == 0 and "ACTIVE" in watched.stdout, watched.stdout + watched.stderr
    update = control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]
    assert update["status"] == "ACTIVE" and update["trainingMode"] == "UPDATE"
    metrics = control.get_solution_metrics(solutionVersionArn=arn)["metrics"]
    assert metrics["normalized_discounted_cumulative_gain_at_10"] > 0  # (its speed: bench/quality.py)
    errors, calls, stop = [], [0], threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                assert len(top(runtime, campaign, "259")) == 10
                calls[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    control.update_campaign(campaignArn=campaign, solutionVersionArn=update["solutionVersionArn"])
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors == [] and calls[0] > 20
    described = control.describe_campaign(campaignArn=campaign)["campaign"]
    assert described["solutionVersionArn"] == update["solutionVersionArn"]


def test_an_anonymous_visitor_gets_recommendations_and_brings_them_along_when_signing_in(
        server: Server, unique: str, tmp_path: Path) -> None:
    control, runtime = server.client("personalize"), server.client("personalize-runtime")
    events = server.client("personalize-events")
    group = dataset_group(control, unique, slice_of_ml100k(tmp_path / "ml.csv", 5_000))
    solution = control.create_solution(name=f"{unique}-pop", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    campaign = control.create_campaign(name=f"{unique}-c", solutionVersionArn=train(control, solution)[
        "solutionVersionArn"])["campaignArn"]
    tracker = control.create_event_tracker(name=f"{unique}-t", datasetGroupArn=group)["trackingId"]
    popular = top(runtime, campaign, "nobody-yet")
    unclicked = control.create_filter(  # clicks reach the filter on them, whoever made them
        name=f"{unique}-unclicked", datasetGroupArn=group,
        filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]

    def wait_until_gone(user: str, items: list[str]) -> None:
        deadline = time.monotonic() + 30
        while set(items) & set(top(runtime, campaign, user, filterArn=unclicked)):
            assert time.monotonic() < deadline, f"{items} still recommended to {user}"
            time.sleep(0.02)

    # before signing in: events carry only the sessionId, and the sessionId asks for recommendations
    events.put_events(trackingId=tracker, sessionId=f"{unique}-web", eventList=[
        {"eventType": "click", "itemId": item, "sentAt": time.time() + i}
        for i, item in enumerate(popular[:2])])
    wait_until_gone(f"{unique}-web", popular[:2])
    # signing in mid-session: the user's state takes the anonymous clicks along
    events.put_events(trackingId=tracker, userId=f"{unique}-user", sessionId=f"{unique}-web", eventList=[
        {"eventType": "click", "itemId": popular[2], "sentAt": time.time() + 5}])
    wait_until_gone(f"{unique}-user", popular[:3])
