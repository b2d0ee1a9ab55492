"""`personalize api coverage` tells the truth about the running server."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import botocore.session
import httpx
from support import Server


def call(server: Server, op: str) -> httpx.Response:
    return httpx.post(server.url + "/", content=b"{}", headers={
        "x-amz-target": f"AmazonPersonalize.{op}", "content-type": "application/x-amz-json-1.1"})


def test_coverage_matches_what_the_control_plane_answers(embedded_server: Server) -> None:
    out = subprocess.run([sys.executable, "-m", "serving.cli", "api", "coverage", "--json"],
                         capture_output=True, text=True, check=True).stdout
    cov = json.loads(out)
    assert sum(len(c["implemented"]) + len(c["missing"]) for c in cov.values()) == 79
    control = cov["personalize"]
    for op in control["missing"]:
        r = call(embedded_server, op)
        assert (r.status_code, r.json()["__type"]) == (400, "UnknownOperationException"), op
        assert op in r.json()["message"]
    for op in control["implemented"]:
        assert call(embedded_server, op).json().get("__type") != "UnknownOperationException", op
    events = botocore.session.get_session().get_service_model("personalize-events")
    for op in events.operation_names:  # a served route validates; a missing one is a 404
        r = httpx.post(embedded_server.url + events.operation_model(op).http["requestUri"], content=b"{}")
        served = r.status_code == 400 and r.json()["__type"] == "InvalidInputException"
        assert served == (op in cov["personalize-events"]["implemented"]), (op, r.status_code)


def test_an_unchanged_boto3_program_finds_us_through_the_service_env_var(
        embedded_server: Server) -> None:
    env = {"AWS_ENDPOINT_URL_PERSONALIZE": embedded_server.url, "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1"}
    program = ("import boto3; c = boto3.client('personalize'); c.create_dataset_group(name='viaenv');"
               "print(c.list_dataset_groups()['datasetGroups'][0]['name'])")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "viaenv"
    assert boto3.__version__  # the same boto3 the tests use
