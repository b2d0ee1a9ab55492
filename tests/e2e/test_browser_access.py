"""Web pages (the JS SDK) reach the data plane: CORS on /events and the runtime routes only,
for the origins OPZ_CORS_ORIGINS names (none by default), and PutEvents bodies sent by
navigator.sendBeacon (Content-Type text/plain) are accepted."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import Server

PAGE = "http://shop.example"


@pytest.fixture
def shop_server(tmp_path: Path) -> Iterator[Server]:
    """A server the shop's pages may call from their own origin."""
    server = Server(tmp_path / "data", env={"OPZ_CORS_ORIGINS": PAGE}).start()
    yield server
    server.stop()


def tracker(server: Server, name: str) -> str:
    control = server.client("personalize")
    group = control.create_dataset_group(name=name)["datasetGroupArn"]
    return control.create_event_tracker(name=name, datasetGroupArn=group)["trackingId"]


def test_a_beacon_put_events_is_accepted_and_readable_cross_origin(shop_server: Server) -> None:
    tid = tracker(shop_server, "web")
    body = json.dumps({"trackingId": tid, "sessionId": "s1", "eventList": [
        {"eventId": "e1", "eventType": "click", "itemId": "i1", "sentAt": time.time()}]})
    r = httpx.post(shop_server.url + "/events", content=body,
                   headers={"content-type": "text/plain;charset=UTF-8", "origin": PAGE})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == PAGE
    bad = httpx.post(shop_server.url + "/events", content=json.dumps({"trackingId": tid}),
                     headers={"content-type": "text/plain", "origin": PAGE})
    assert (bad.status_code, bad.json()["__type"]) == (400, "InvalidInputException")
    assert {"x-amzn-errortype", "retry-after"} <= {
        h.strip().lower() for h in bad.headers["access-control-expose-headers"].split(",")}


def test_preflight_is_answered_for_the_data_plane_but_not_the_control_plane(shop_server: Server) -> None:
    def preflight(path: str, headers: str) -> httpx.Response:
        return httpx.options(shop_server.url + path, headers={
            "origin": PAGE, "access-control-request-method": "POST",
            "access-control-request-headers": headers})

    for path in ("/events", "/recommendations", "/personalize-ranking"):
        r = preflight(path, "content-type")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == PAGE, path
    control = preflight("/", "content-type,x-amz-target")
    assert "access-control-allow-origin" not in control.headers


def test_no_origin_is_allowed_unless_configured(embedded_server: Server, tmp_path: Path) -> None:
    tid = tracker(embedded_server, "web")
    for path, body in (("/events", {"trackingId": tid, "sessionId": "s",
                                    "eventList": [{"eventType": "click", "sentAt": 1}]}),
                       ("/recommendations", {"campaignArn": "arn:aws:personalize:us-east-1:000000000000:"
                                                            "campaign/none", "userId": "u"})):
        preflight = httpx.options(embedded_server.url + path, headers={
            "origin": PAGE, "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in preflight.headers, path
        r = httpx.post(embedded_server.url + path, headers={"content-type": "text/plain", "origin": PAGE},
                       content=json.dumps(body))
        assert "access-control-allow-origin" not in r.headers, (path, r.status_code)
    server = Server(tmp_path / "any", env={"OPZ_CORS_ORIGINS": "*"}).start()
    try:  # "*": any page
        assert httpx.options(server.url + "/events", headers={
            "origin": "http://elsewhere.example", "access-control-request-method": "POST"}).headers[
            "access-control-allow-origin"] == "*"
    finally:
        server.stop()


def test_cors_origins_setting_narrows_or_turns_off_cors(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OPZ_CORS_ORIGINS": "http://a.example, http://b.example"}).start()
    try:
        def allowed(origin: str) -> str | None:
            return httpx.options(server.url + "/events", headers={
                "origin": origin, "access-control-request-method": "POST"}).headers.get(
                "access-control-allow-origin")
        assert allowed("http://b.example") == "http://b.example"
        assert allowed(PAGE) is None
    finally:
        server.stop()
    server = Server(tmp_path / "data2", env={"OPZ_CORS_ORIGINS": ""}).start()
    try:
        tid = tracker(server, "web")
        r = httpx.post(server.url + "/events", headers={"content-type": "text/plain", "origin": PAGE},
                       content=json.dumps({"trackingId": tid, "sessionId": "s",
                                           "eventList": [{"eventType": "click", "sentAt": 1}]}))
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    finally:
        server.stop()
