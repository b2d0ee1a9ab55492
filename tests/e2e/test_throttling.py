"""Request rates per campaign and per tracker, through boto3: past the rate the server answers
ThrottlingException (HTTP 400, as AWS does), and boto3's own retry handler backs off and gets
through, unchanged. The quotas are lowered to 5 a second so a test can reach them."""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from support import Server
from test_training import RECIPE, dataset_group, train

RATE = 5
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1})


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[dict[str, Any]]:
    server = Server(tmp_path / "data", env={
        "OPZ_CAMPAIGN_REQUESTS_PER_SECOND": str(RATE), "OPZ_TRACKER_REQUESTS_PER_SECOND": str(RATE),
        "OPZ_MIN_TRAINING_INTERACTIONS": "50"}).start()
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n" + "".join(
        f"u{u},i{i},{1_700_000_000 + u * 100 + i},click,\n" for u in range(40) for i in range(20)
        if i <= u % 20 or i == 0))
    control = server.client("personalize")
    group = dataset_group(control, "shop", clicks)
    solution = control.create_solution(name="shop", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version
    campaign = control.create_campaign(name="shop", solutionVersionArn=version["solutionVersionArn"],
                                       minProvisionedTPS=1)["campaignArn"]
    tracking_id = control.create_event_tracker(name="shop", datasetGroupArn=group)["trackingId"]
    yield {"server": server, "campaign": campaign, "tracking_id": tracking_id}
    server.stop()


def client(server: Server, service: str, config: botocore.config.Config | None = None) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", config=config,
                        aws_access_key_id="test", aws_secret_access_key="test")


def burst(call: Any, n: int) -> tuple[int, list[botocore.exceptions.ClientError], float]:
    """`n` calls back to back: how many went through, the errors of those that did not, and
    the seconds they took."""
    ok, refused, start = 0, [], time.monotonic()
    for _ in range(n):
        try:
            call()
            ok += 1
        except botocore.exceptions.ClientError as exc:
            refused.append(exc)
    return ok, refused, time.monotonic() - start


def assert_throttled(errors: list[botocore.exceptions.ClientError], what: str) -> None:
    assert errors, f"{what}: nothing was throttled"
    for exc in errors:
        assert exc.response["Error"]["Code"] == "ThrottlingException", exc.response
        meta = exc.response["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 400 and meta["HTTPHeaders"]["retry-after"] == "1"
        assert what in exc.response["Error"]["Message"]


def test_a_campaign_and_a_tracker_are_throttled_past_their_rate(shop: dict[str, Any]) -> None:
    server, campaign = shop["server"], shop["campaign"]
    runtime = client(server, "personalize-runtime", NO_RETRIES)
    events = client(server, "personalize-events", NO_RETRIES)
    recommend = lambda: runtime.get_recommendations(campaignArn=campaign, userId="u1")  # noqa: E731
    rank = lambda: runtime.get_personalized_ranking(campaignArn=campaign, userId="u1",  # noqa: E731
                                                    inputList=["i1", "i2"])
    put = lambda: events.put_events(trackingId=shop["tracking_id"], sessionId="s1", eventList=[  # noqa: E731
        {"eventType": "click", "itemId": "i1", "sentAt": time.time()}])
    # calls far quicker than 5 a second: a burst of 5 (one second's worth), then refused,
    # each operation on its own bucket
    for call, what in ((recommend, "GetRecommendations"), (rank, "GetPersonalizedRanking"),
                       (put, "PutEvents")):
        ok, refused, took = burst(call, 3 * RATE)
        assert RATE <= ok <= RATE + math.ceil(took * RATE), (what, ok, took)  # + what refilled meanwhile
        assert_throttled(refused, what)
    control = server.client("personalize")
    version = control.describe_campaign(campaignArn=campaign)["campaign"]["solutionVersionArn"]
    other = control.create_campaign(name="other", solutionVersionArn=version,
                                    minProvisionedTPS=1)["campaignArn"]
    assert runtime.get_recommendations(campaignArn=other, userId="u1")["itemList"], \
        "another campaign has its own rate"
    time.sleep(1.0)  # a second later the bucket has refilled
    assert burst(recommend, RATE)[0] == RATE


def test_boto3_backs_off_on_throttling_and_gets_through(shop: dict[str, Any]) -> None:
    """boto3's default (legacy) retry handler and its standard mode both retry a
    ThrottlingException with exponential backoff: every call succeeds, at about the rate."""
    server, campaign = shop["server"], shop["campaign"]
    for config in (None, botocore.config.Config(retries={"mode": "standard", "max_attempts": 10})):
        runtime = client(server, "personalize-runtime", config)
        calls, retried, start = 4 * RATE, 0, time.monotonic()
        for _ in range(calls):
            answer = runtime.get_recommendations(campaignArn=campaign, userId="u1", numResults=3)
            assert len(answer["itemList"]) == 3
            retried += answer["ResponseMetadata"]["RetryAttempts"]
        took = time.monotonic() - start
        assert retried > 0, "nothing was throttled, so nothing was retried"
        # 4 seconds' worth of calls, less the burst: held back to about the rate by the backoff
        assert took >= (calls - 2 * RATE) / RATE, took
        time.sleep(1.0)
    events = client(server, "personalize-events")
    retried = sum(events.put_events(trackingId=shop["tracking_id"], sessionId="s2", eventList=[
        {"eventType": "click", "itemId": "i2", "sentAt": time.time()}])["ResponseMetadata"]["RetryAttempts"]
        for _ in range(3 * RATE))
    assert retried > 0
