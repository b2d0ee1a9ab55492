"""Web pages (the JS SDK) reach the data plane: CORS on /events and the runtime routes only,
and PutEvents bodies sent by navigator.sendBeacon (Content-Type text/plain) are accepted."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from support import Server

PAGE = "http://shop.example"


def tracker(server: Server, name: str) -> str:
    control = server.client("personalize")
    group = control.create_dataset_group(name=name)["datasetGroupArn"]
    return control.create_event_tracker(name=name, datasetGroupArn=group)["trackingId"]


def test_a_beacon_put_events_is_accepted_and_readable_cross_origin(embedded_server: Server) -> None:
    tid = tracker(embedded_server, "web")
    body = json.dumps({"trackingId": tid, "sessionId": "s1", "eventList": [
        {"eventId": "e1", "eventType": "click", "itemId": "i1", "sentAt": time.time()}]})
    r = httpx.post(embedded_server.url + "/events", content=body,
                   headers={"content-type": "text/plain;charset=UTF-8", "origin": PAGE})
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    bad = httpx.post(embedded_server.url + "/events", content=json.dumps({"trackingId": tid}),
                     headers={"content-type": "text/plain", "origin": PAGE})
    assert (bad.status_code, bad.json()["__type"]) == (400, "InvalidInputException")
    assert {"x-amzn-errortype", "retry-after"} <= {
        h.strip().lower() for h in bad.headers["access-control-expose-headers"].split(",")}


def test_preflight_is_answered_for_the_data_plane_but_not_the_control_plane(embedded_server: Server) -> None:
    def preflight(path: str, headers: str) -> httpx.Response:
        return httpx.options(embedded_server.url + path, headers={
            "origin": PAGE, "access-control-request-method": "POST",
            "access-control-request-headers": headers})

    for path in ("/events", "/recommendations", "/personalize-ranking"):
        r = preflight(path, "content-type")
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*", path
    control = preflight("/", "content-type,x-amz-target")
    assert "access-control-allow-origin" not in control.headers


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
