"""Two accounts on one server: each sees only its own resources, in every operation, and
their data never meets, even with the same dataset group name, user ids and item ids.

Both shops import the same catalogue of clicks into a dataset group of the same name, train
Popularity-Count and deploy it. A visitor clicks the top item in shop A: A's next answer
drops it, B's (same user id, same items) still shows it.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, Worker
from test_training import RECIPE, dataset_group, train

A, B = "111111111111", "222222222222"
SCRAPE_TOKEN = "operator-scrape-token"


@pytest.fixture
def server(tmp_path: Path, unique: str, mode_env: dict[str, str]) -> Iterator[tuple[Server, dict, dict]]:
    """A signed server (both accounts' keys made before it starts), in each mode."""
    env = {"OPZ_MIN_TRAINING_INTERACTIONS": "50", "OPZ_METRICS_TOKEN": SCRAPE_TOKEN, **mode_env}
    if mode_env:  # distributed: this test's groups in every account, and a stream worker
        env |= {"OPZ_REDIS_PREFIX": unique, "OPZ_STREAM_APP_ID": f"{unique}-stream",
                "OPZ_STREAM_DATASET_GROUPS": rf"(?:\d{{12}}\.)?{unique}"}
    s = Server(tmp_path / "data", env=env)
    keys = s.create_key(A), s.create_key(B)
    s.start()
    worker = Worker(tmp_path, {**env, "OPZ_DATA_DIR": str(s.data_dir)}).start() if mode_env else None
    yield s, *keys
    s.stop()
    if worker is not None:
        worker.stop()


def clicks(to: Path) -> Path:
    """40 users over 20 items, item i0 the most clicked."""
    rows = [f"u{u},i{i},{1_700_000_000 + u * 100 + i},click," for u in range(40) for i in range(20)
            if i <= u % 20 or i == 0]
    to.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n" + "\n".join(rows) + "\n")
    return to


class Shop:
    """One account's dataset group, deployed campaign and tracker, through its own key."""

    def __init__(self, server: Server, key: dict[str, str], name: str, csv: Path) -> None:
        self.control = server.client("personalize", key)
        self.events = server.client("personalize-events", key)
        self.runtime = server.client("personalize-runtime", key)
        self.group = dataset_group(self.control, name, csv)
        solution = self.control.create_solution(name=name, datasetGroupArn=self.group,
                                                recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        version = train(self.control, solution)
        assert version["status"] == "ACTIVE", version
        self.campaign = self.control.create_campaign(
            name=name, solutionVersionArn=version["solutionVersionArn"], minProvisionedTPS=1)["campaignArn"]
        tracker = self.control.create_event_tracker(name=name, datasetGroupArn=self.group)
        self.tracker_arn, self.tracking_id = tracker["eventTrackerArn"], tracker["trackingId"]
        self.unclicked = self.control.create_filter(  # a campaign recommends clicked items too
            name=name, datasetGroupArn=self.group,
            filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")')["filterArn"]

    def top(self, user: str, **request: Any) -> list[str]:
        return [i["itemId"] for i in self.runtime.get_recommendations(
            campaignArn=self.campaign, userId=user, numResults=10, **request)["itemList"]]

    def click(self, user: str, item: str) -> None:
        self.events.put_events(trackingId=self.tracking_id, userId=user, sessionId=f"s-{user}",
                               eventList=[{"eventType": "click", "itemId": item, "sentAt": time.time()}])

    def until_gone(self, user: str, item: str) -> None:
        deadline = time.monotonic() + 30
        while item in self.top(user, filterArn=self.unclicked):
            assert time.monotonic() < deadline, f"the click on {item} never reached {user}'s answer"
            time.sleep(0.05)


def not_found(call: Any) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException", caught.value.response


def test_two_accounts_never_meet(server: tuple[Server, dict, dict], tmp_path: Path, unique: str) -> None:
    server, key_a, key_b = server
    data = clicks(tmp_path / "clicks.csv")
    a, b = Shop(server, key_a, unique, data), Shop(server, key_b, unique, data)
    assert a.group != b.group and a.group.split(":")[4] == A and b.group.split(":")[4] == B

    for shop in (a, b):
        groups = shop.control.list_dataset_groups()["datasetGroups"]
        assert [g["datasetGroupArn"] for g in groups] == [shop.group]
        assert [c["campaignArn"] for c in shop.control.list_campaigns()["campaigns"]] == [shop.campaign]
        assert len(shop.control.list_schemas()["schemas"]) == 1

    # every kind of operation on A's resources, from B, is answered as if they did not exist
    probes = [
        lambda: b.control.describe_dataset_group(datasetGroupArn=a.group),
        lambda: b.control.list_datasets(datasetGroupArn=a.group),
        lambda: b.control.list_solutions(datasetGroupArn=a.group),
        lambda: b.control.describe_campaign(campaignArn=a.campaign),
        lambda: b.control.update_campaign(campaignArn=a.campaign, minProvisionedTPS=2),
        lambda: b.control.describe_event_tracker(eventTrackerArn=a.tracker_arn),
        lambda: b.control.delete_event_tracker(eventTrackerArn=a.tracker_arn),
        lambda: b.control.create_solution(name="steal", datasetGroupArn=a.group,
                                          recipeArn=RECIPE + "aws-popularity-count"),
        lambda: b.control.delete_campaign(campaignArn=a.campaign),
        lambda: b.control.delete_dataset_group(datasetGroupArn=a.group),
        lambda: b.events.put_events(trackingId=a.tracking_id, sessionId="s", eventList=[
            {"eventType": "click", "itemId": "i0", "sentAt": time.time()}]),
        lambda: b.runtime.get_recommendations(campaignArn=a.campaign, userId="visitor"),
        lambda: b.runtime.get_personalized_ranking(campaignArn=a.campaign, userId="visitor",
                                                   inputList=["i0", "i1"]),
    ]
    for probe in probes:
        not_found(probe)
    assert a.control.describe_campaign(campaignArn=a.campaign)["campaign"]["minProvisionedTPS"] == 1

    # same group name, same user id, same items: a click in A changes A's answer only
    top_a, top_b = a.top("visitor"), b.top("visitor")
    assert top_a == top_b and top_a[0] == "i0"
    a.click("visitor", "i0")
    a.until_gone("visitor", "i0")
    b.click("visitor", top_b[1])
    b.until_gone("visitor", top_b[1])
    assert "i0" in b.top("visitor", filterArn=b.unclicked)
    stored = {p.name for p in (server.data_dir / "datasets").iterdir()}
    assert stored >= {f"{A}.{unique}", f"{B}.{unique}"}  # each account's rows in a folder of its own

    # the operator's scrape counts both shops, one series per campaign; no account's key reads it
    assert httpx.get(server.url + "/metrics", timeout=5).status_code == 403
    assert httpx.get(server.url + "/metrics", timeout=5,
                     headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    scraped = httpx.get(server.url + "/metrics", timeout=5,
                        headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}).text
    served = {(s.labels["account"], s.labels["campaign"]) for f in text_string_to_metric_families(scraped)
              for s in f.samples if s.name == "opz_api_campaign_solution_version_info"}
    assert served == {(A, unique), (B, unique)}


def test_quotas_are_counted_per_account(tmp_path: Path) -> None:
    """A create past the account's quota is refused as Personalize refuses it; another
    account's count is its own, and a per-account override raises one account's quota."""
    quotas = json.dumps({"*": {"dataset-group": 2}, B: {"dataset-group": 3}})
    s = Server(tmp_path / "data", env={"OPZ_QUOTAS": quotas})
    key_a, key_b = s.create_key(A), s.create_key(B)
    s.start()
    try:
        for key, allowed in ((key_a, 2), (key_b, 3)):
            control = s.client("personalize", key)
            for i in range(allowed):
                control.create_dataset_group(name=f"g{i}")
            with pytest.raises(control.exceptions.LimitExceededException, match="quota"):
                control.create_dataset_group(name="one-too-many")
            control.delete_dataset_group(datasetGroupArn=control.list_dataset_groups()["datasetGroups"][0][
                "datasetGroupArn"])
            control.create_dataset_group(name="after-a-delete")
    finally:
        s.stop()
