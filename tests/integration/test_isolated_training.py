"""Training beside serving: the API's trainings run in a child process of lower priority, on all
but one of the cores, report progress back, fail saying why, and die when the job stops."""
from __future__ import annotations

import multiprocessing
import os
import re
from pathlib import Path
from typing import Any

import pytest

from kernel.settings import Settings
from training.isolated import IsolatedTrainer, training_cores

POPULARITY = "arn:aws:personalize:::recipe/aws-popularity-count"


class Stop(Exception):
    pass


def request(group: str) -> dict[str, Any]:
    return {"version_arn": "arn:aws:personalize:us-east-1:000000000000:solution/s/1", "dataset_group": group,
            "recipe_arn": POPULARITY, "hyperparameters": {}, "event_type": None,
            "event_value_threshold": None, "parent": None}


def test_the_child_trains_niced_on_all_cores_but_one_and_its_failure_says_why(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    said: list[str] = []

    def progress(**fields: object) -> None:
        if fields:
            said.append(str(fields["message"]))

    with pytest.raises(ValueError, match="interactions"):  # an empty dataset group: too little data
        IsolatedTrainer(settings).train(progress=progress, **request("empty"))
    niceness = min(19, os.getpriority(os.PRIO_PROCESS, 0) + settings.training_nice)
    assert re.fullmatch(rf"training in process \d+ at niceness {niceness} on "
                        rf"{len(training_cores(settings))} of {os.cpu_count()} cores", said[0])
    assert said[1] == "reading interactions"
    assert multiprocessing.active_children() == []


def test_the_cores_are_all_but_one_or_as_many_as_set(tmp_path: Path) -> None:
    mine = sorted(os.sched_getaffinity(0))
    assert training_cores(Settings(data_dir=tmp_path)) == mine[-max(1, len(mine) - 1):]
    assert training_cores(Settings(data_dir=tmp_path, training_cores=1)) == mine[-1:]
    assert training_cores(Settings(data_dir=tmp_path, training_cores=99)) == mine


def test_a_stopped_job_kills_its_training_process(tmp_path: Path) -> None:
    def progress(**fields: object) -> None:
        raise Stop  # the job runner's answer to StopSolutionVersionCreation or a shutdown

    with pytest.raises(Stop):
        IsolatedTrainer(Settings(data_dir=tmp_path)).train(progress=progress, **request("any"))
    assert multiprocessing.active_children() == []
