"""Automatic training's decision: FULL per schedulingExpression, UPDATE in between."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from serving.schedule import Leader, due

HOUR, DAY = 3600.0, 86400.0
HRNN = "arn:aws:personalize:::recipe/aws-hrnn"
POPULARITY = "arn:aws:personalize:::recipe/aws-popularity-count"


def solution(recipe: str = HRNN, auto: bool = True, schedule: str | None = None) -> dict[str, Any]:
    config = {"autoTrainingConfig": {"schedulingExpression": schedule}} if schedule else {}
    return {"solutionArn": "s", "recipeArn": recipe, "performAutoTraining": auto, "solutionConfig": config}


def version(mode: str, at: float, status: str = "ACTIVE") -> dict[str, Any]:
    return {"trainingMode": mode, "creationDateTime": at, "status": status}


def test_no_auto_training_no_versions() -> None:
    assert due(solution(auto=False), [], 0.0, 2 * HOUR) is None


def test_first_full_at_once_then_per_schedule() -> None:
    assert due(solution(), [], 0.0, 2 * HOUR) == "FULL"
    assert due(solution(schedule="rate(1 day)"), [version("FULL", 0.0)], DAY, 100 * DAY) == "FULL"
    assert due(solution(), [version("FULL", 0.0)], 6 * DAY, 100 * DAY) is None  # default 7 days
    assert due(solution(), [version("FULL", 0.0)], 7 * DAY, 100 * DAY) == "FULL"


def test_updates_between_fulls_only_for_recipes_that_have_them() -> None:
    assert due(solution(), [version("FULL", 0.0)], HOUR, 2 * HOUR) is None
    assert due(solution(), [version("FULL", 0.0)], 2 * HOUR, 2 * HOUR) == "UPDATE"
    assert due(solution(), [version("FULL", 0.0), version("UPDATE", 2 * HOUR)], 3 * HOUR, 2 * HOUR) is None
    assert due(solution(POPULARITY), [version("FULL", 0.0)], 2 * HOUR, 2 * HOUR) is None
    failed = [version("FULL", 0.0, "CREATE FAILED")]
    assert due(solution(), failed, 2 * HOUR, 2 * HOUR) is None  # nothing ACTIVE to update from


def test_nothing_starts_while_a_version_trains() -> None:
    assert due(solution(), [version("FULL", 0.0, "CREATE IN_PROGRESS")], 30 * DAY, HOUR) is None


def test_one_leader_per_data_dir_and_the_next_takes_over(tmp_path: Path) -> None:
    first, second = Leader(tmp_path / "scheduler.lock"), Leader(tmp_path / "scheduler.lock")
    assert first.held() and first.held()  # holding it again is no new claim
    assert not second.held()
    first.release()  # as when its process exits
    assert second.held() and not first.held()
    second.release()
