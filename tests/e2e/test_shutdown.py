"""SIGTERM stops a server within 10 s whatever it is doing, and loses no job.

Kubernetes sends SIGKILL 30 s after SIGTERM; a server that waits for a 45-minute training
run to end is killed mid-write. Here it stops at once: the training in progress goes back to
CREATE PENDING, says why, and the next server on the same data dir takes it up again.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
from support import Server
from test_training import RECIPE, dataset_group, slice_of_ml100k, wait


def raw_version(server: Server, arn: str) -> dict[str, Any]:
    """The whole body, with the fields boto3's model drops (progress, interruptions)."""
    r = httpx.post(server.url + "/", content=json.dumps({"solutionVersionArn": arn}), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonPersonalize.DescribeSolutionVersion"}, timeout=10)
    return r.json()["solutionVersion"]


def training(server: Server, arn: str) -> bool:
    """Past its first epoch: in the loop that a shutdown must interrupt."""
    return "/200 loss" in raw_version(server, arn).get("progress", {}).get("message", "")


def until(check: Any, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.2)
    return value


def test_sigterm_mid_training_stops_in_seconds_and_the_next_server_resumes(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OPZ_MIN_TRAINING_INTERACTIONS": "100"}).start()
    control = server.client("personalize")
    group = dataset_group(control, "long", slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    solution = control.create_solution(
        name="long-hrnn", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
        solutionConfig={"algorithmHyperParameters": {"epochs": "200"}})["solutionArn"]
    version = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    until(lambda: training(server, version))

    assert server.proc is not None
    asked = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(30)
    took = time.monotonic() - asked
    assert took < 10, f"SIGTERM took {took:.1f} s\n{server.output()}"
    assert server.proc.returncode in (0, -signal.SIGTERM), server.output()  # uvicorn re-raises it
    assert "interrupted by shutdown" in server.output()

    again = Server(tmp_path / "data", env={"OPZ_MIN_TRAINING_INTERACTIONS": "100"}).start()
    try:
        body = until(lambda: (b := raw_version(again, version))["status"] == "CREATE IN_PROGRESS" and b)
        assert body["interruptions"] == 1
        until(lambda: training(again, version))
        again.client("personalize").stop_solution_version_creation(solutionVersionArn=version)
        stopped = wait(lambda: again.client("personalize").describe_solution_version(
            solutionVersionArn=version)["solutionVersion"], timeout=60)
        assert stopped["status"] == "CREATE STOPPED"
        assert "taken up again after 1 interruption(s)" in again.output()
    finally:
        again.stop()
