"""Training beside serving: each solution version trained in a child process of lower priority,
on fewer cores than the API process may use.

An API process that trains in one of its own threads shares the cores with the requests it
answers, and torch's threads (one per core) then wait on each other's time slices whenever a
request runs: serving's tail grows and training slows. The child adds OPZ_TRAINING_NICE to its
niceness, so the kernel gives the API every core it asks for first, and keeps to
OPZ_TRAINING_CORES cores (its CPU affinity, which torch's thread count follows), so the
requests keep one to themselves. The child's progress comes back over a pipe to the job
runner's `progress`, which answers a stop or a shutdown by raising: the child is killed then.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

from kernel.artifact_store import ArtifactError
from kernel.settings import Settings
from training.trainer import Progress, Trainer

log = logging.getLogger(__name__)
POLL_S = 0.5  # how often the parent asks `progress` whether the job is to stop


class TrainingCrashed(RuntimeError):
    """The child died or raised what is not the data's fault (its traceback is in the log)."""


def training_cores(settings: Settings) -> list[int]:
    """The cores the child trains on: the last OPZ_TRAINING_CORES of the API's (0: all but one)."""
    mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else list(range(os.cpu_count() or 1))
    want = settings.training_cores or len(mine) - 1
    return mine[-max(1, min(want, len(mine))):]


def _child(settings: Settings, cores: list[int], kwargs: dict[str, Any], pipe: Connection) -> None:
    os.nice(settings.training_nice)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
        cores = sorted(os.sched_getaffinity(0))
    parent = os.getppid()

    def progress(**fields: object) -> None:
        """A bare call (before every step) asks whether to stop: the parent answers that itself,
        unless it is gone (killed): then nobody wants this training."""
        if os.getppid() != parent:
            os._exit(1)
        if fields:
            pipe.send(("progress", fields))

    try:
        progress(message=f"training in process {os.getpid()} at niceness {os.getpriority(os.PRIO_PROCESS, 0)}"
                 f" on {len(cores)} of {os.cpu_count()} cores")
        pipe.send(("done", Trainer.of(settings).train(**kwargs, progress=progress)))
    except (ValueError, ArtifactError) as exc:  # the data's or the parent's fault: the job fails saying why
        pipe.send(("failed", str(exc)))
    except BaseException:  # noqa: BLE001 - whatever it was, the parent must hear of it
        pipe.send(("crashed", traceback.format_exc()))


class IsolatedTrainer:
    """The Trainer port (serving.control.ports.Trainer), each training in a child process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")  # no copy of the API's threads and sockets

    @classmethod
    def of(cls, settings: Settings) -> IsolatedTrainer:
        return cls(settings)

    def train(self, *, progress: Progress, **kwargs: Any) -> dict[str, Any]:
        ours, theirs = self.context.Pipe(duplex=False)
        child = self.context.Process(target=_child, daemon=True, name="opz-training",
                                     args=(self.settings, training_cores(self.settings), kwargs, theirs))
        child.start()
        theirs.close()
        try:
            while True:
                if not ours.poll(POLL_S):
                    progress()  # raises when the job is to stop, or the process shuts down
                    continue
                try:
                    kind, payload = ours.recv()
                except EOFError:
                    child.join(5)
                    raise TrainingCrashed(f"the training process ended (exit {child.exitcode})") from None
                if kind == "progress":
                    progress(**payload)
                elif kind == "done":
                    return payload
                elif kind == "failed":
                    raise ValueError(payload)
                else:
                    log.error("training process crashed:\n%s", payload)
                    raise TrainingCrashed(payload.strip().splitlines()[-1])
        finally:
            ours.close()
            if child.is_alive():
                child.kill()
            child.join(5)
