"""A shutdown never waits on a job: whatever its step, the job is back to pending in seconds."""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from serving.control.sqlite_store import ResourceStore
from serving.control.store import Body
from serving.jobs import PENDING, JobFailed, JobRunner, Progress
from serving.work_metrics import WorkMetrics

ARN = "arn:aws:personalize:us-east-1:000000000000:dataset-import-job/j"


async def interrupted(tmp_path: Path, work: object, grace_s: float) -> tuple[float, Body]:
    """Start `work` as a job, SIGTERM-equivalent once it runs: (seconds to stop, its body)."""
    resources = ResourceStore(tmp_path / "control.db")
    resources.create("dataset-import-job", ARN, "j", {"datasetImportJobArn": ARN, "status": PENDING})
    jobs = JobRunner(resources, {"dataset-import-job": work}, poll_s=0.05, grace_s=grace_s)  # type: ignore[dict-item]
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.run(stop))
    while (resources.get(ARN) or {}).get("status") == PENDING:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    asked = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, 10)
    took, body = time.monotonic() - asked, resources.get(ARN)
    resources.close()
    assert body is not None
    return took, body


async def test_a_job_that_reports_progress_stops_at_its_next_report(tmp_path: Path) -> None:
    def work(job: Body, progress: Progress) -> Body:
        while True:
            progress(rowsDone=1)
            time.sleep(0.05)

    took, body = await interrupted(tmp_path, work, grace_s=4.0)
    assert took < 1.5
    assert body["status"] == PENDING and body["interruptions"] == 1 and body["runner"] == ""
    assert body["progress"]["rowsDone"] == 1
    assert "the next process on this data dir takes it up again" in body["progress"]["message"]


async def test_a_step_that_outlasts_the_grace_is_left_behind(tmp_path: Path) -> None:
    release = threading.Event()

    def work(job: Body, progress: Progress) -> Body:
        release.wait(60)  # a long epoch, a slow read: no progress call to interrupt it
        return {}

    try:
        took, body = await interrupted(tmp_path, work, grace_s=1.0)
    finally:
        release.set()
    assert 1.0 <= took < 2.5
    assert body["status"] == PENDING and body["interruptions"] == 1


def arn(kind: str, name: str) -> str:
    return f"arn:aws:personalize:us-east-1:000000000000:{kind}/{name}"


async def test_an_import_never_waits_behind_trainings_and_trainings_run_side_by_side(tmp_path: Path) -> None:
    resources = ResourceStore(tmp_path / "control.db")
    release, started = threading.Event(), []

    def train(job: Body, progress: Progress) -> Body:
        started.append(job["solutionVersionArn"])
        while not release.wait(0.02):
            progress()
        return {}

    def load(job: Body, progress: Progress) -> Body:
        return {"rows": 1}

    jobs = JobRunner(resources, {"solution-version": train, "dataset-import-job": load}, poll_s=0.05,
                     training_slots=2)
    for name in ("a", "b", "c"):
        version = arn("solution-version", name)
        resources.create("solution-version", version, name,
                         {"solutionVersionArn": version, "status": PENDING})
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.run(stop))
    try:
        while len(started) < 2:
            await asyncio.sleep(0.02)
        imported = arn("dataset-import-job", "i")
        resources.create("dataset-import-job", imported, "i",
                         {"datasetImportJobArn": imported, "status": PENDING})
        jobs.wake()
        async with asyncio.timeout(5):
            while (resources.get(imported) or {}).get("status") != "ACTIVE":
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert len(started) == 2  # two slots: the third training waits for one
        release.set()
        async with asyncio.timeout(5):
            while not all((resources.get(arn("solution-version", n)) or {}).get("status") == "ACTIVE"
                          for n in "abc"):
                await asyncio.sleep(0.02)
    finally:
        release.set()
        stop.set()
        await running
        resources.close()


async def test_every_job_is_counted_by_kind_and_outcome_and_a_failure_is_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    resources = ResourceStore(tmp_path / "control.db")
    for name in ("ok", "bad", "bug"):
        resources.create("dataset-import-job", arn("dataset-import-job", name), name,
                         {"datasetImportJobArn": arn("dataset-import-job", name), "status": PENDING})

    def load(job: Body, progress: Progress) -> Body:
        name = job["datasetImportJobArn"].rsplit("/", 1)[1]
        if name == "bad":
            raise JobFailed("the file has no USER_ID column")
        if name == "bug":
            raise KeyError("oops")
        return {}

    registry = CollectorRegistry()
    jobs = JobRunner(resources, {"dataset-import-job": load}, poll_s=0.05, metrics=WorkMetrics(registry))
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.run(stop))
    while any((resources.get(arn("dataset-import-job", n)) or {}).get("status")
              in (PENDING, "CREATE IN_PROGRESS") for n in ("ok", "bad", "bug")):
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 10)
    resources.close()

    def count(outcome: str) -> float | None:
        return registry.get_sample_value("opz_jobs_finished_total",
                                         {"kind": "dataset-import-job", "outcome": outcome})

    assert (count("succeeded"), count("failed"), count("crashed"), count("interrupted")) == (1, 1, 1, 0)
    assert registry.get_sample_value("opz_job_duration_seconds_count", {"kind": "dataset-import-job"}) == 3
    assert registry.get_sample_value("opz_jobs_running", {"kind": "dataset-import-job"}) == 0
    failed = [r for r in caplog.records if r.getMessage().endswith("failed: the file has no USER_ID column")]
    assert failed and failed[0].levelno == logging.WARNING
