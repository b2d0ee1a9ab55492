"""What the control plane asks of training: the work that serving cannot do itself.

The composition root (serving/cli.py) hands in training's implementations, because serving
never imports training; the handlers and the job runner see only these shapes.
"""
from __future__ import annotations

from typing import Any, Protocol

from kernel.archive import Erased
from kernel.dataset_schema import Schema
from serving.jobs import Progress


class Imported(Protocol):
    """An import job's outcome (training.importer.Imported)."""

    @property
    def rows(self) -> int: ...

    @property
    def skipped(self) -> int: ...  # invalid rows left out

    @property
    def summary(self) -> str: ...  # for people: what was imported, what was skipped and why


class DatasetFiles(Protocol):
    """Dataset rows on disk (training.importer.DatasetFiles)."""

    def import_csv(self, *, job_id: str, location: str, dataset_group: str, dataset_type: str,
                   schema: Schema, replace: bool, progress: Progress) -> Imported: ...

    def export_csv(self, *, job_name: str, destination: str, dataset_group: str, dataset_type: str,
                   schema: Schema, ingestion_mode: str, progress: Progress) -> int: ...

    def drop(self, dataset_group: str, dataset_type: str) -> None: ...

    def drop_group(self, dataset_group: str) -> None: ...

    def user_ids(self, location: str) -> list[str]: ...

    def erase_users(self, dataset_group: str, users: list[str]) -> Erased: ...


class Trainer(Protocol):
    """Trains one solution version (training.trainer.Trainer)."""

    def train(self, *, version_arn: str, dataset_group: str, recipe_arn: str | None,
              hyperparameters: dict[str, str], event_type: str | None, event_value_threshold: float | None,
              parent: str | None, progress: Progress, search: dict[str, Any] | None = None,
              automl: dict[str, Any] | None = None,
              excluded: dict[str, list[str]] | None = None, textual: str | None = None) -> dict[str, Any]: ...
    # returns {"artifact": <location: kernel.artifact_store>, "metrics": {...}, "trainingHours": h}
