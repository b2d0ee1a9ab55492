"""Signed calls: once an access key exists, every call to the three APIs must carry a valid
SigV4 signature, and boto3 with that key works unchanged.

An operator starts a server (open on loopback, as for local use), creates a key with
`personalize keys create`, and from then on unsigned, forged, stale and unknown-key
requests are refused with the errors botocore knows.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.exceptions
import httpx
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from support import Server, free_port

ACCOUNT = "111111111111"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("signed") / "data").start()
    yield s
    s.stop()


def error_code(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return caught.value.response["Error"]["Code"]


def signed_at(url: str, body: bytes, key: dict[str, str], when: float) -> dict[str, str]:
    """Headers of a ListDatasetGroups request that botocore signs as if at `when`."""
    req = AWSRequest("POST", url + "/", data=body, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonPersonalize.ListDatasetGroups"})
    auth = SigV4Auth(Credentials(key["accessKeyId"], key["secretAccessKey"]), "personalize", "us-east-1")
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=datetime.datetime.fromtimestamp(when, datetime.UTC)):
        auth.add_auth(req)
    return dict(req.headers.items())


def test_an_operator_turns_on_signed_calls(server: Server) -> None:
    control = server.client("personalize")
    control.list_dataset_groups()  # no keys yet: open on loopback, and the log says so
    assert "calls are not signed" in server.output()

    key = server.create_key(ACCOUNT)
    assert key["accessKeyId"].startswith("AKOP") and len(key["secretAccessKey"]) >= 40
    listed = server.keys("list").stdout
    assert key["accessKeyId"] in listed and key["secretAccessKey"] not in listed
    time.sleep(5.5)  # keys are looked up at most 5 s old

    signed = server.client("personalize", key)
    group = signed.create_dataset_group(name="shop")["datasetGroupArn"]
    assert f":{ACCOUNT}:dataset-group/shop" in group
    tracker = signed.create_event_tracker(name="web", datasetGroupArn=group)["trackingId"]
    server.client("personalize-events", key).put_events(trackingId=tracker, userId="u1", sessionId="s1",
                                                        eventList=[{"eventType": "click", "itemId": "i1",
                                                                    "sentAt": time.time()}])

    anonymous = {s: _client(server, s, Config(signature_version=UNSIGNED))
                 for s in ("personalize", "personalize-events", "personalize-runtime")}
    assert error_code(lambda: anonymous["personalize"].list_dataset_groups()) == \
        "MissingAuthenticationTokenException"
    assert error_code(lambda: anonymous["personalize-events"].put_events(
        trackingId=tracker, sessionId="s", eventList=[{"eventType": "click", "itemId": "i",
                                                       "sentAt": time.time()}])) == \
        "MissingAuthenticationTokenException"
    assert error_code(lambda: anonymous["personalize-runtime"].get_recommendations(
        campaignArn=group.replace("dataset-group", "campaign"), userId="u1")) == \
        "MissingAuthenticationTokenException"
    wrong_secret = server.client("personalize", {**key, "secretAccessKey": "not-the-secret"})
    assert error_code(wrong_secret.list_dataset_groups) == "InvalidSignatureException"
    stranger = server.client("personalize", {"accessKeyId": "AKOPNOBODY0000000000", "secretAccessKey": "x"})
    assert error_code(stranger.list_dataset_groups) == "UnrecognizedClientException"
    assert error_code(control.list_dataset_groups) == "UnrecognizedClientException"  # the test/test key

    for when in (time.time() - 16 * 60, 1_420_070_400):  # 16 minutes ago; 2015
        r = httpx.post(server.url + "/", content=b"{}", headers=signed_at(server.url, b"{}", key, when))
        assert r.status_code == 403 and r.json()["__type"] == "InvalidSignatureException", r.text
    good = signed_at(server.url, b"{}", key, time.time())
    assert httpx.post(server.url + "/", content=b"{}", headers=good).status_code == 200
    tampered = httpx.post(server.url + "/", content=b'{"maxResults": 1}', headers=good)
    assert tampered.status_code == 403 and tampered.json()["__type"] == "InvalidSignatureException"
    for path in ("/events", "/items", "/users", "/actions", "/action-interactions", "/recommendations",
                 "/personalize-ranking", "/action-recommendations"):
        r = httpx.post(server.url + path, json={})
        assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException", path
    assert httpx.get(server.url + "/health").status_code == 200  # operations' routes stay open
    scrape = httpx.get(server.url + "/metrics")  # every account's counts: an operator's token only
    assert scrape.status_code == 403 and "OPZ_METRICS_TOKEN" in scrape.json()["message"]

    refused = server.keys("delete", key["accessKeyId"])  # the last key: the server would open up
    assert refused.returncode == 2 and "last key" in refused.stderr
    successor = server.create_key(ACCOUNT)
    assert server.keys("delete", key["accessKeyId"]).returncode == 0
    time.sleep(5.5)
    assert error_code(signed.list_dataset_groups) == "UnrecognizedClientException"
    assert server.client("personalize", successor).list_dataset_groups()["datasetGroups"][0]["name"] == "shop"


def _client(server: Server, service: str, config: Config) -> Any:
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", config=config)


def serve(data_dir: Path, host: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "serving.cli", "serve", "--data-dir", str(data_dir),
                             "--host", host, "--port", str(free_port())], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **env})


def test_a_server_reachable_from_a_network_needs_keys(tmp_path: Path) -> None:
    refused = serve(tmp_path / "data", "0.0.0.0", {})
    out, _ = refused.communicate(timeout=60)
    assert refused.returncode == 3, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a loopback address and there are no access keys" in lines[0], out

    keyed = Server(tmp_path / "data")
    keyed.create_key(ACCOUNT)
    for env in ({}, {"OPZ_AUTH": "off"}):
        started = serve(tmp_path / "data", "0.0.0.0", env)
        try:
            time.sleep(3)
            assert started.poll() is None, started.communicate()[0]
        finally:
            started.terminate()
            started.wait(20)


def test_a_public_tracker_takes_unsigned_events_from_its_origins_only(tmp_path: Path) -> None:
    """A web page cannot hold a secret: its shop makes the tracker public for the page's
    origin, and the trackingId becomes a write-only key for that one tracker."""
    server = Server(tmp_path / "data")
    key = server.create_key(ACCOUNT)
    server.start()
    try:
        control = server.client("personalize", key)
        group = control.create_dataset_group(name="web")["datasetGroupArn"]
        public = control.create_event_tracker(name="web", datasetGroupArn=group, tags=[
            {"tagKey": "opz:public", "tagValue": "true"},
            {"tagKey": "opz:origins", "tagValue": "https://shop.example https://www.shop.example"}])
        private_group = control.create_dataset_group(name="app")["datasetGroupArn"]
        private = control.create_event_tracker(name="app", datasetGroupArn=private_group)

        def put(tracking_id: str, origin: str | None = None) -> httpx.Response:
            return httpx.post(server.url + "/events", headers={"Origin": origin} if origin else {}, json={
                "trackingId": tracking_id, "sessionId": "s1", "eventList": [
                    {"eventType": "click", "itemId": "i1", "sentAt": time.time()}]})

        assert put(public["trackingId"]).status_code == 200
        assert put(public["trackingId"], "https://www.shop.example").status_code == 200
        other = put(public["trackingId"], "https://evil.example")
        assert other.status_code == 403 and other.json()["__type"] == "AccessDeniedException"
        assert put(private["trackingId"]).json()["__type"] == "MissingAuthenticationTokenException"
        # the write key is good for nothing else
        r = httpx.post(server.url + "/recommendations", json={"campaignArn": group.replace(
            "dataset-group", "campaign"), "userId": "u1", "trackingId": public["trackingId"]})
        assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException"
        # a page of the shop may ask (CORS); another site's may not
        def preflight(origin: str) -> httpx.Response:
            return httpx.options(server.url + "/events", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
        assert preflight("https://shop.example").headers["access-control-allow-origin"] == "https://shop.example"
        assert "access-control-allow-origin" not in preflight("https://evil.example").headers

        slow_group = control.create_dataset_group(name="slow")["datasetGroupArn"]
        slow = control.create_event_tracker(name="slow", datasetGroupArn=slow_group, tags=[
            {"tagKey": "opz:public", "tagValue": "true"},
            {"tagKey": "opz:requests-per-second", "tagValue": "2"}])
        answers = [put(slow["trackingId"]) for _ in range(4)]
        assert [r.status_code for r in answers[:2]] == [200, 200]  # a second's burst, then the rate
        assert answers[-1].status_code == 400 and answers[-1].json()["__type"] == "ThrottlingException"

        with pytest.raises(control.exceptions.InvalidInputException, match="opz:origins"):
            control.create_event_tracker(name="bad", datasetGroupArn=control.create_dataset_group(
                name="bad")["datasetGroupArn"], tags=[{"tagKey": "opz:public", "tagValue": "true"},
                                                      {"tagKey": "opz:origins", "tagValue": "https://x.example/path"}])
    finally:
        server.stop()


def test_keys_from_a_mounted_secret(tmp_path: Path) -> None:
    """Kubernetes and Compose hand the keys over as a file (OPZ_KEYS_FILE); a file that is
    not one stops the server at start, in one line, instead of leaving it open."""
    key = {"accessKeyId": "AKOPFROMASECRET00001", "secretAccessKey": "s" * 40, "account": ACCOUNT}
    secret = tmp_path / "keys.json"
    secret.write_text(json.dumps([key]))
    server = Server(tmp_path / "data", env={"OPZ_KEYS_FILE": str(secret)}).start()
    try:
        assert error_code(server.client("personalize").list_dataset_groups) == "UnrecognizedClientException"
        assert server.client("personalize", key).list_dataset_groups()["datasetGroups"] == []
    finally:
        server.stop()
    secret.write_text('[{"accessKeyId": "AKOP"}]')
    for host in ("0.0.0.0", "127.0.0.1"):
        broken = serve(tmp_path / "data", host, {"OPZ_KEYS_FILE": str(secret)})
        out, _ = broken.communicate(timeout=60)
        assert broken.returncode == 3 and "needs accessKeyId, secretAccessKey and account" in out, out
        assert len(out.strip().splitlines()) == 1 and "s" * 40 not in out
