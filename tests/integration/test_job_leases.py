"""JobRunner (serving/jobs.py) on each control store: runners sharing a queue run each job
once, a job whose runner stopped renewing its lease is taken over, and a runner that lost
its lease stops its work and writes nothing more."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter

import pytest

from kernel.settings import Settings
from serving.control.store import HOLDER, LEASE_UNTIL, Body, ControlStore, open_control_store
from serving.jobs import ACTIVE, LEASE_S, PENDING, RUNNING, JobInterrupted, JobRunner, Progress

pytestmark = pytest.mark.integration
KIND = "dataset-import-job"


def arn(name: str) -> str:
    return f"arn:aws:personalize:us-east-1:000000000000:{KIND}/{name}"


async def until(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


async def test_runners_sharing_a_queue_run_each_job_once(control_settings: Settings) -> None:
    stores = [open_control_store(control_settings) for _ in range(2)]  # a connection each
    ran: Counter[str] = Counter()
    lock = threading.Lock()

    def load(job: Body, progress: Progress) -> Body:
        with lock:
            ran[job["datasetImportJobArn"]] += 1
        time.sleep(0.01)
        progress(rowsDone=1)
        return {"rows": 1}

    names = [f"j{i}" for i in range(12)]
    for name in names:
        stores[0].create(KIND, arn(name), name, {"datasetImportJobArn": arn(name), "status": PENDING})
    runners = [JobRunner(store, {KIND: load}, poll_s=0.02) for store in stores]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    try:
        await until(lambda: all(stores[1].get(arn(n))["status"] == ACTIVE for n in names))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert ran == Counter({arn(n): 1 for n in names})
    assert all(stores[0].get(arn(n))["rows"] == 1 for n in names)
    for store in stores:
        store.close()


async def run_until_active(store: ControlStore, name: str, result: dict[str, int]) -> JobRunner:
    """A runner on `store` until job `name` is ACTIVE, and a moment more: what else it claims."""
    runner = JobRunner(store, {KIND: lambda job, progress: result}, poll_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await until(lambda: store.get(arn(name))["status"] == ACTIVE)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task
    return runner


async def test_a_job_whose_lease_lapsed_is_taken_over_and_a_held_one_left_alone(
        control_settings: Settings) -> None:
    store = open_control_store(control_settings)
    now = time.time()
    for name, lease in (("lapsed", now - 1), ("held", now + 600)):
        store.create(KIND, arn(name), name, {"datasetImportJobArn": arn(name), "status": RUNNING,
                                            HOLDER: "another-host:1", LEASE_UNTIL: lease})
    runner = await run_until_active(store, "lapsed", {"rows": 2})
    assert store.get(arn("lapsed"))[HOLDER] == runner.owner and store.get(arn("lapsed"))["rows"] == 2
    held = store.get(arn("held"))
    assert (held["status"], held[HOLDER]) == (RUNNING, "another-host:1")
    store.close()


async def test_a_job_of_a_gone_process_of_this_host_is_taken_over_at_once(control_settings: Settings) -> None:
    """A server SIGKILLed and started again takes its job up at once, not after the lease."""
    exited = await asyncio.create_subprocess_exec("true")
    await exited.wait()
    store = open_control_store(control_settings)
    host = socket.gethostname()
    for name, pid in (("gone", exited.pid), ("alive", os.getppid())):
        store.create(KIND, arn(name), name, {"datasetImportJobArn": arn(name), "status": RUNNING,
                                            HOLDER: f"{host}:{pid}", LEASE_UNTIL: time.time() + 600})
    await run_until_active(store, "gone", {"rows": 3})
    alive = store.get(arn("alive"))
    assert (alive["status"], alive[HOLDER]) == (RUNNING, f"{host}:{os.getppid()}")
    store.close()


async def test_a_runner_that_lost_its_lease_stops_and_writes_nothing_more(control_settings: Settings) -> None:
    store = open_control_store(control_settings)
    interrupted = threading.Event()

    def load(job: Body, progress: Progress) -> Body:
        try:
            while True:
                progress(rowsDone=1)
                time.sleep(0.02)
        except JobInterrupted:
            interrupted.set()
            raise

    store.create(KIND, arn("j"), "j", {"datasetImportJobArn": arn("j"), "status": PENDING})
    runner = JobRunner(store, {KIND: load}, poll_s=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await until(lambda: store.get(arn("j")).get("progress") == {"rowsDone": 1})
        # as another host sees it once this runner stalled past its lease
        later = time.time() + LEASE_S + 1
        taken = store.claim((KIND,), waiting=PENDING, running=RUNNING, holder="another-host:1",
                            lease_until=later + LEASE_S, now=later)
        assert taken is not None and taken.before[HOLDER] == runner.owner
        await until(interrupted.is_set)
        await asyncio.sleep(0.3)  # a few heartbeats: none may renew, requeue or end it
    finally:
        stop.set()
        await task
    body = store.get(arn("j"))
    assert (body["status"], body[HOLDER], body[LEASE_UNTIL]) == (RUNNING, "another-host:1", later + LEASE_S)
    assert "interruptions" not in body
    store.close()
