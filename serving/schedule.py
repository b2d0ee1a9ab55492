"""Automatic training: FULL per a solution's schedulingExpression, UPDATE in between.

`due` is the pure decision (unit-tested); `run_scheduler` applies it every few seconds by
creating solution versions the way CreateSolutionVersion does (trainingType AUTOMATIC),
so the job runner trains them like any other.
"""
from __future__ import annotations

import asyncio
import logging
import time

from serving.control_api import Ctx
from serving.jobs import ACTIVE, PENDING, RUNNING, STOPPING
from serving.resources import Body
from serving.solutions_api import start_version
from stream.recipes import RECIPES, schedule_seconds

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


async def run_scheduler(ctx: Ctx, update_every_s: float, stop: asyncio.Event, tick_s: float = 5.0) -> None:
    while not stop.is_set():
        now = time.time()
        for solution in ctx.resources.list("solution"):
            mode = due(solution, ctx.resources.list("solution-version", solution["solutionArn"]), now,
                       update_every_s)
            if mode is not None:
                arn = start_version(ctx, solution, mode, training_type="AUTOMATIC")
                log.info("automatic training: %s %s", mode, arn)
        try:
            await asyncio.wait_for(stop.wait(), tick_s)
        except TimeoutError:
            pass
