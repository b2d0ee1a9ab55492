"""Automatic training: FULL per a solution's schedulingExpression, UPDATE in between; a
recommender's FULL retrain every 7 days, as Personalize's.

`due` is the pure decision (unit-tested); `run_scheduler` applies it every few seconds by
creating solution versions the way CreateSolutionVersion does (trainingType AUTOMATIC),
so the job runner trains them like any other. Of the processes sharing a control plane, one
schedules: the holder of a file lock in the data dir (`Leader`), or, with PostgreSQL, of an
advisory lock in the database (serving.control.postgres_store.AdvisoryLeader), so that processes on
different hosts agree too.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from kernel.recipes import RECIPES, schedule_seconds
from serving.control import recommenders
from serving.control.base import Ctx
from serving.control.solutions import start_version
from serving.control.store import Body
from serving.jobs import ACTIVE, PENDING, RUNNING, STOPPING

log = logging.getLogger(__name__)
DEFAULT_SCHEDULE = "rate(7 days)"  # Personalize's default for automatic training


def due(solution: Body, versions: list[Body], now: float, update_every_s: float) -> str | None:
    """The training mode to start now for this solution, if any."""
    if not solution.get("performAutoTraining"):
        return None
    if any(v["status"] in (PENDING, RUNNING, STOPPING) for v in versions):
        return None
    schedule = solution.get("solutionConfig", {}).get("autoTrainingConfig", {}).get(
        "schedulingExpression") or DEFAULT_SCHEDULE
    fulls = [v["creationDateTime"] for v in versions if v["trainingMode"] == "FULL"]
    if not fulls or now - max(fulls) >= schedule_seconds(schedule):
        return "FULL"
    active = [v for v in versions if v["status"] == ACTIVE]
    if RECIPES[solution["recipeArn"]].supports_update and active and \
            now - max(v["creationDateTime"] for v in versions) >= update_every_s:
        return "UPDATE"
    return None


class Leadership(Protocol):
    def held(self) -> bool: ...

    def release(self) -> None: ...


def leadership(ctx: Ctx) -> Leadership:
    if url := ctx.settings.database_url:
        from serving.control.postgres_store import AdvisoryLeader
        return AdvisoryLeader(url)
    return Leader(ctx.settings.data_dir / "scheduler.lock")


class Leader:
    """Of the processes sharing a data dir (`serve --workers N`, API processes or trainers side by
    side), the one holding an exclusive flock on `path`: the only one that schedules, since two
    schedulers would both find a solution due and both start a version. The kernel drops the
    lock when its holder exits, however it exits, and another process takes over at its next tick."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def held(self) -> bool:
        if self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def run_scheduler(ctx: Ctx, update_every_s: float, stop: asyncio.Event, tick_s: float = 5.0) -> None:
    leader = leadership(ctx)
    try:
        while not stop.is_set():
            if leader.held():
                schedule_due(ctx, update_every_s)
            try:
                await asyncio.wait_for(stop.wait(), tick_s)
            except TimeoutError:
                pass
    finally:
        leader.release()


def schedule_due(ctx: Ctx, update_every_s: float) -> None:
    now = time.time()
    for solution in ctx.resources.list("solution"):
        mode = due(solution, ctx.resources.list("solution-version", solution["solutionArn"]), now,
                   update_every_s)
        if mode is not None:
            arn = start_version(ctx, solution, mode, training_type="AUTOMATIC")
            log.info("automatic training: %s %s", mode, arn)
    for recommender in ctx.resources.list(recommenders.RECOMMENDERS.kind):
        if recommenders.due(recommender, recommenders.versions_of(ctx, recommender["recommenderArn"]), now):
            arn = recommenders.start_training(ctx, recommender, recommender["recommenderConfig"],
                                              training_type="AUTOMATIC")
            log.info("recommender retraining: %s", arn)
