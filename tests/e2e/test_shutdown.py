"""SIGTERM stops a server, a trainer or a stream worker within 10 s whatever it is doing, and
loses no job and no event.

Kubernetes sends SIGKILL 30 s after SIGTERM; a process that waits for a 45-minute training
run to end is killed mid-write. Here it stops at once: the job in progress (a training, an
import) goes back to CREATE PENDING, says why, and the next process on the same data dir
takes it up again; a stream worker's unfinished events go to the next worker of its group.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from deployment import Deployment
from support import Process, Server, Trainer
from test_training import INTERACTIONS, RECIPE, ROLE, dataset_group, slice_of_ml100k, wait

from kernel.datasets import DatasetStore
from serving.control.sqlite_store import ResourceStore


def raw_version(server: Server, arn: str) -> dict[str, Any]:
    """The whole body, with the fields boto3's model drops (progress, interruptions)."""
    return raw(server, "SolutionVersion", arn)


def raw(server: Server, kind: str, arn: str) -> dict[str, Any]:
    """Describe<kind>'s whole body."""
    member = kind[0].lower() + kind[1:]
    r = httpx.post(server.url + "/", content=json.dumps({f"{member}Arn": arn}), headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"AmazonPersonalize.Describe{kind}"}, timeout=10)
    return r.json()[member]


def training(server: Server, arn: str) -> bool:
    """Past its first epoch: in the loop that a shutdown must interrupt."""
    return "/200 loss" in raw_version(server, arn).get("progress", {}).get("message", "")


def until(check: Any, timeout: float = 240, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(interval)
    return value


def sigterm(process: Process) -> float:
    """Seconds from SIGTERM to the process's exit."""
    assert process.proc is not None
    asked = time.monotonic()
    process.proc.send_signal(signal.SIGTERM)
    process.proc.wait(30)
    return time.monotonic() - asked


def long_training(server: Server, tmp_path: Path) -> str:
    """A 200-epoch HRNN version on a slice of ml-100k, once it is past its first epoch."""
    control = server.client("personalize")
    group = dataset_group(control, "long", slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    solution = control.create_solution(
        name="long-hrnn", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
        solutionConfig={"algorithmHyperParameters": {"epochs": "200"}})["solutionArn"]
    version = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    until(lambda: training(server, version))
    return version


def test_sigterm_mid_training_stops_in_seconds_and_the_next_server_resumes(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OPZ_MIN_TRAINING_INTERACTIONS": "100"}).start()
    version = long_training(server, tmp_path)

    took = sigterm(server)
    assert server.proc is not None
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


def test_sigterm_mid_training_stops_a_trainer_in_seconds_and_the_next_trainer_resumes(
        tmp_path: Path) -> None:
    env = {"OPZ_MIN_TRAINING_INTERACTIONS": "100", "OPZ_TRAIN_IN_SERVER": "false"}
    server = Server(tmp_path / "data", env=env).start()
    trainer = Trainer(tmp_path / "data", env=env).start()
    again: Trainer | None = None
    try:
        control = server.client("personalize")
        version = long_training(server, tmp_path)

        took = sigterm(trainer)
        assert took < 10, f"SIGTERM took {took:.1f} s\n{trainer.output()}"
        assert trainer.proc is not None and trainer.proc.returncode == 0, trainer.output()
        assert "interrupted by shutdown" in trainer.output()
        body = raw_version(server, version)
        assert body["status"] == "CREATE PENDING" and body["interruptions"] == 1, body
        assert "the next process on this data dir takes it up again" in body["progress"]["message"]

        again = Trainer(tmp_path / "data", env=env).start()
        until(lambda: training(server, version))
        assert raw_version(server, version)["status"] == "CREATE IN_PROGRESS"
        control.stop_solution_version_creation(solutionVersionArn=version)
        stopped = wait(lambda: control.describe_solution_version(
            solutionVersionArn=version)["solutionVersion"], timeout=60)
        assert stopped["status"] == "CREATE STOPPED"
        assert "taken up again after 1 interruption(s)" in again.output()
    finally:
        for process in (again, trainer, server):
            if process is not None:
                process.stop()


def test_sigterm_stops_a_stream_worker_in_seconds_and_loses_no_event(
        tmp_path: Path, unique: str, kafka_bootstrap: str, redis_url: str) -> None:
    """Mid-stream: what the stopped worker applied and archived stays, what it had not
    committed the next worker of the group applies, once."""
    deployment = Deployment("kafka", tmp_path, unique, kafka=kafka_bootstrap, redis=redis_url).start()
    took: list[float] = []

    def sigterm_and_restart() -> None:
        stopped = deployment.worker
        took.append(sigterm(stopped))
        assert stopped.proc is not None and stopped.proc.returncode == 0, stopped.output()
        deployment.start_worker()

    try:
        deployment.check(deployment.send_during(sigterm_and_restart))
        assert took[0] < 10, f"SIGTERM took {took[0]:.1f} s\n{deployment.started[0].output()}"
    finally:
        deployment.stop()


def interactions_csv(to: Path, blocks: int) -> int:
    """`blocks` times the same 100,000 interactions: enough that an import is still reading
    when SIGTERM comes (it reads a few million rows a second). Returns the rows written."""
    block = "".join(f"u{n % 50_000},i{n % 3_000},{1_700_000_000 + n},click\n" for n in range(100_000))
    with open(to, "w") as f:
        f.write("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n")
        for _ in range(blocks):
            f.write(block)
    return blocks * 100_000


def reading(server: Server, job: str, rows: int) -> bool:
    """Past its first batch, short of its last: in the loop that a shutdown must interrupt."""
    body = raw(server, "DatasetImportJob", job)
    assert body["status"] != "ACTIVE", "the import ended before SIGTERM: give it more rows"
    return 0 < body.get("progress", {}).get("rowsDone", 0) < rows


def test_sigterm_mid_import_stops_in_seconds_and_the_next_server_imports_the_rows_once(
        tmp_path: Path) -> None:
    csv = tmp_path / "big.csv"
    rows = interactions_csv(csv, 100)
    server = Server(tmp_path / "data").start()
    try:
        control = server.client("personalize")
        group = control.create_dataset_group(name="big")["datasetGroupArn"]
        schema = control.create_schema(name="big", schema=INTERACTIONS)["schemaArn"]
        dataset = control.create_dataset(name="big", schemaArn=schema, datasetGroupArn=group,
                                         datasetType="INTERACTIONS")["datasetArn"]
        job = control.create_dataset_import_job(jobName="big", datasetArn=dataset, roleArn=ROLE,
                                                dataSource={"dataLocation": str(csv)})["datasetImportJobArn"]
        until(lambda: reading(server, job, rows), interval=0.05)
        took = sigterm(server)
    finally:
        server.stop()
    assert took < 10, f"SIGTERM took {took:.1f} s\n{server.output()}"
    resources = ResourceStore(tmp_path / "data" / "control.db")
    body = resources.get(job)
    resources.close()
    assert body is not None and body["status"] == "CREATE PENDING" and body["interruptions"] == 1, body
    assert "the next process on this data dir takes it up again" in body["progress"]["message"]

    again = Server(tmp_path / "data").start()
    try:
        done = wait(lambda: raw(again, "DatasetImportJob", job), timeout=120)
        assert done["status"] == "ACTIVE" and done["interruptions"] == 1, done
        assert "taken up again after 1 interruption(s)" in again.output()
    finally:
        again.stop()
    store = DatasetStore(tmp_path / "data" / "datasets")
    manifest = store.manifest("big", "INTERACTIONS")
    assert manifest.jobs == [job] and [p.rows for p in manifest.parts] == [rows]
    parts = sorted((tmp_path / "data" / "datasets").rglob("*.parquet"))  # staged ones too
    assert [p.name for p in parts] == [manifest.parts[0].name]  # the interrupted run left none behind
    assert pq.ParquetFile(parts[0]).metadata.num_rows == rows
