"""Bad input through the real server: Personalize's error shape, never a 422 or a 500."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import httpx
import pytest
from support import Server


def error(resp: httpx.Response) -> tuple[int, str, str]:
    body = resp.json()
    return resp.status_code, body["__type"], body["message"]


@pytest.fixture
def tracking_id(embedded_server: Server) -> str:
    control = embedded_server.client("personalize")
    dsg = control.create_dataset_group(name="errs")["datasetGroupArn"]
    return control.create_event_tracker(name="errs-t", datasetGroupArn=dsg)["trackingId"]


@pytest.mark.parametrize("body, status, type_name, needle", [
    (b"{not json", 400, "InvalidInputException", "JSON"),
    (b'{"sessionId": "s", "eventList": [{"eventType": "c", "sentAt": 1}]}', 400,
     "InvalidInputException", "trackingId"),
    (b'{"trackingId": "TID", "eventList": [{"eventType": "c", "sentAt": 1}]}', 400,
     "InvalidInputException", "sessionId"),
    (b'{"trackingId": "TID", "sessionId": "s", "eventList": []}', 400, "InvalidInputException",
     "eventList"),
    (b'{"trackingId": "TID", "sessionId": "s", "eventList": [{"eventType": 5, "sentAt": 1}]}',
     400, "SerializationException", "eventList[0].eventType"),  # the wrong JSON type, as AWS answers it
    (b'{"trackingId": "nope", "sessionId": "s", "eventList": [{"eventType": "c", "sentAt": 1}]}',
     404, "ResourceNotFoundException", "nope"),
    (b'{"trackingId": "TID", "sessionId": "s", "eventList": ['
     + b",".join([b'{"eventType": "c", "sentAt": 1}'] * 11) + b"]}", 400, "InvalidInputException",
     "eventList"),
    (b'{"trackingId": "TID", "sessionId": "s", "eventList": [{"eventType": "c", "sentAt": 1, '
     b'"properties": "{\\"k\\": \\"' + b"x" * 1100 + b'\\"}"}]}', 400, "InvalidInputException",
     "properties"),
    (b'{"trackingId": "TID", "sessionId": "s", "eventList": [{"eventType": "c", "sentAt": "soon"}]}',
     400, "InvalidInputException", "sentAt"),
])
def test_put_events_rejects_bad_input_with_personalize_errors(
        embedded_server: Server, tracking_id: str, body: bytes, status: int, type_name: str,
        needle: str) -> None:
    resp = httpx.post(embedded_server.url + "/events", content=body.replace(b"TID", tracking_id.encode()),
                      headers={"content-type": "application/json"})
    got = error(resp)
    assert got[:2] == (status, type_name) and needle in got[2], got
    rows = sqlite3.connect(embedded_server.data_dir / "events.db").execute(
        "SELECT COUNT(*) FROM events").fetchone()[0]
    assert rows == 0  # nothing written


def test_control_plane_errors_reach_boto3_as_typed_exceptions(embedded_server: Server) -> None:
    control = embedded_server.client("personalize")
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.describe_dataset_group(
            datasetGroupArn="arn:aws:personalize:us-east-1:000000000000:dataset-group/missing")
    control.create_dataset_group(name="dup")
    with pytest.raises(control.exceptions.ResourceAlreadyExistsException):
        control.create_dataset_group(name="dup")
    unknown = httpx.post(embedded_server.url + "/", content=b"{}",
                         headers={"x-amz-target": "AmazonPersonalize.ListMoonPhases",
                                  "content-type": "application/x-amz-json-1.1"})
    assert error(unknown)[:2] == (400, "UnknownOperationException") and "ListMoonPhases" in error(unknown)[2]
    raw = httpx.post(embedded_server.url + "/", content=b'{"name": "bad name!"}',
                     headers={"x-amz-target": "AmazonPersonalize.CreateDatasetGroup",
                              "content-type": "application/x-amz-json-1.1"})
    assert error(raw)[:2] == (400, "InvalidInputException") and "name" in error(raw)[2]


def test_unknown_route_is_a_json_error_not_an_html_page(embedded_server: Server) -> None:
    status, type_name, _ = error(httpx.get(embedded_server.url + "/nothing-here"))
    assert (status, type_name) == (404, "ResourceNotFoundException")


def test_cli_help_lists_every_subcommand() -> None:
    out = subprocess.run([sys.executable, "-m", "serving.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for line in ("serve ", "run the API server", "stream ", "Kafka stream processing"):
        assert line in out, out
    worker = subprocess.run([sys.executable, "-m", "serving.cli", "stream", "--help"],
                            capture_output=True, text=True, check=True).stdout
    assert "worker" in worker and "tail" in worker, worker
