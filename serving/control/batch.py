"""Batch inference jobs: CreateBatchInferenceJob, DescribeBatchInferenceJob, ListBatchInferenceJobs.

A job reads Personalize's batch input (JSON lines, `jobInput.s3DataSource.path`: a file of
the allowed file roots or an s3:// object) and writes `<jobOutput path>/<input name>.out`,
one answer per line in the input's order (serving.batch_recommend). It runs in the API
process's job runner, which has the models: a chunk of lines at a time, so memory stays
bounded whatever the input's size, and it checkpoints (lines done, input and output bytes)
in its progress, so a job taken up again after a crash or a restart goes on from there.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

from pydantic import Field, StringConstraints

from kernel.artifact_store import ArtifactError
from kernel.contract import dataset_group_name
from kernel.locations import LocationRefused, S3Location, confined
from kernel.recipes import RECIPES
from kernel.s3_files import S3Error, S3Files
from serving.batch_recommend import Batch, Line, parse
from serving.control.base import Ctx, Family, Name, Page, Req, Tags, location_allowed, operation, register
from serving.control.filters import FILTERS, FilterInputs
from serving.control.solutions import VERSIONS
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceInUseException
from serving.filters import FilterError, FilterValueError
from serving.jobs import ACTIVE, PENDING, JobFailed, Progress
from serving.ranking import parse_exploration
from serving.recommend import User
from serving.wire import Arn

log = logging.getLogger(__name__)
Location = Annotated[str, StringConstraints(min_length=1, max_length=256)]
CHUNK_LINES = 1000  # lines answered at a time: the job's memory is a chunk's
CHECKPOINT_S = 1.0  # at most this much work is done again after a crash
DEFAULT_RESULTS, MAX_RESULTS = 25, 500  # Personalize's, for batch jobs


class S3DataConfig(Req):
    path: Location
    kmsKeyArn: Annotated[str, StringConstraints(max_length=2048)] | None = None


class BatchInferenceJobInput(Req):
    s3DataSource: S3DataConfig


class BatchInferenceJobOutput(Req):
    s3DataDestination: S3DataConfig


class BatchInferenceJobConfig(Req):
    itemExplorationConfig: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    rankingInfluence: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None


class CreateBatchInferenceJob(Req):
    jobName: Name
    solutionVersionArn: Arn
    filterArn: Arn | None = None
    numResults: int | None = None
    jobInput: BatchInferenceJobInput
    jobOutput: BatchInferenceJobOutput
    roleArn: Annotated[str, StringConstraints(max_length=256)]
    batchInferenceJobConfig: BatchInferenceJobConfig | None = None
    tags: Tags | None = None
    batchInferenceJobMode: Literal["BATCH_INFERENCE", "THEME_GENERATION"] | None = None
    themeGenerationConfig: dict[str, Any] | None = None


class BatchInferenceJobArn(Req):
    batchInferenceJobArn: Arn


class ListBySolutionVersion(Page):
    solutionVersionArn: Arn | None = None


JOBS = register(Family("batch-inference-job", BatchInferenceJobArn, ListBySolutionVersion, (
    "batchInferenceJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "solutionVersionArn", "batchInferenceJobMode"), parent="solutionVersionArn"))


@operation("CreateBatchInferenceJob", CreateBatchInferenceJob)
def create_batch_inference_job(req: CreateBatchInferenceJob, ctx: Ctx) -> Body:
    JOBS.within_quota(ctx)
    if req.batchInferenceJobMode == "THEME_GENERATION" or req.themeGenerationConfig is not None:
        raise InvalidInputException("batchInferenceJobMode THEME_GENERATION (themes from a language model) "
                                    "is not supported; use BATCH_INFERENCE")
    if req.numResults is not None and not 1 <= req.numResults <= MAX_RESULTS:
        raise InvalidInputException(f"numResults must be between 1 and {MAX_RESULTS}")
    version = VERSIONS.get(ctx, req.solutionVersionArn)
    if version["status"] != ACTIVE:
        raise ResourceInUseException(f"solution version {req.solutionVersionArn} is {version['status']}; "
                                     "batch inference needs an ACTIVE one")
    group = version["datasetGroupArn"]
    if req.filterArn is not None and FILTERS.get(ctx, req.filterArn)["datasetGroupArn"] != group:
        raise InvalidInputException(f"filter {req.filterArn} is not of the solution version's dataset group")
    config = (req.batchInferenceJobConfig or BatchInferenceJobConfig()).model_dump(exclude_none=True)
    try:
        parse_exploration(config.get("itemExplorationConfig"))
    except ValueError as exc:
        raise InvalidInputException(f"batchInferenceJobConfig.itemExplorationConfig: {exc}") from None
    location_allowed(ctx, "jobInput.s3DataSource.path", req.jobInput.s3DataSource.path)
    location_allowed(ctx, "jobOutput.s3DataDestination.path", req.jobOutput.s3DataDestination.path)
    arn = ctx.arn(JOBS.kind, req.jobName)
    body = {"jobName": req.jobName, "batchInferenceJobArn": arn, "solutionVersionArn": req.solutionVersionArn,
            "numResults": req.numResults or DEFAULT_RESULTS, "roleArn": req.roleArn,
            "jobInput": req.jobInput.model_dump(exclude_none=True),
            "jobOutput": req.jobOutput.model_dump(exclude_none=True), "batchInferenceJobConfig": config,
            "batchInferenceJobMode": "BATCH_INFERENCE", "status": PENDING, "datasetGroupArn": group}
    body |= {"filterArn": req.filterArn} if req.filterArn else {}
    JOBS.add(ctx, arn, req.jobName, body, parent=req.solutionVersionArn, tags=req.tags)
    ctx.wake_jobs()
    return {"batchInferenceJobArn": arn}


# ---- the work the job runner calls (in a thread) ----

def run_batch_inference(ctx: Ctx, job: Body, progress: Progress) -> Body:
    batch = _batch(ctx, job)
    files = BatchFiles(ctx, job)
    files.partial.touch()
    with files.input() as source, open(files.partial, "r+b") as out:
        done = _resume(job.get("progress") or {}, source, out)
        total = _lines(source)
        with open(source, "rb") as lines:
            lines.seek(done["inputBytes"])
            done = _answer(batch, lines, out, done, total, progress)
    files.deliver()
    summary = f"{done['linesDone']:,} lines answered, {done['linesFailed']:,} of them with an error"
    if done["linesFailed"]:
        log.warning("%s: %s", job["batchInferenceJobArn"], summary)
    return {"progress": {**done, "message": summary}}


def _batch(ctx: Ctx, job: Body) -> Batch:
    """What answers the job's lines: its version's model, filter and exploration."""
    version = ctx.resources.get(job["solutionVersionArn"], VERSIONS.kind)
    if version is None or version["status"] != ACTIVE:
        raise JobFailed(f"solution version {job['solutionVersionArn']} is gone or no longer ACTIVE")
    assert ctx.models is not None, "batch inference runs where the models are: the API process"
    try:
        model = ctx.models.get(version["solutionVersionArn"], version["artifact"])
    except ArtifactError as exc:
        raise JobFailed(f"solution version {job['solutionVersionArn']}: {exc}") from None
    recipe = RECIPES[version["recipeArn"]]
    exploration = parse_exploration(job["batchInferenceJobConfig"].get("itemExplorationConfig")) \
        if recipe.explores else None
    allowed_for = _filter(ctx, job, model) if job.get("filterArn") else None
    return Batch(model, recipe.recipe_type, int(job["numResults"]), allowed_for, exploration)


def _filter(ctx: Ctx, job: Body, model: Any) -> Any:
    filters, group = FilterInputs(ctx), dataset_group_name(job["datasetGroupArn"])
    try:
        f = filters.filter(job["filterArn"], group)
    except Exception as exc:  # noqa: BLE001 - deleted since the job was created
        raise JobFailed(f"filter {job['filterArn']}: {exc}") from None

    def allowed_for(line: Line, user: User, code: int | None) -> Any:
        try:
            return filters.allowed(f, model, group, values=line.filter_values, interactions=user.past.typed,
                                   user=lambda: filters.user(group, user.id) if user.id else None,
                                   current_item=code)
        except (FilterError, FilterValueError) as exc:
            raise ValueError(f"filter {job['filterArn']}: {exc}") from None
    return allowed_for


def _resume(checkpoint: Body, source: Path, out: BinaryIO) -> Body:
    """Where the job goes on from: its last checkpoint, where the partial output still holds
    all it wrote by then (on this host), else the start. Output beyond it is written again."""
    start = {"linesDone": 0, "linesFailed": 0, "inputBytes": 0, "outputBytes": 0}
    at = {k: int(checkpoint.get(k, 0)) for k in start}
    out.seek(0, os.SEEK_END)
    if not at["linesDone"] or out.tell() < at["outputBytes"] or source.stat().st_size < at["inputBytes"]:
        at = start
    else:
        log.info("going on from line %d, its last checkpoint", at["linesDone"])
    out.truncate(at["outputBytes"])
    out.seek(at["outputBytes"])
    return at


def _lines(source: Path) -> int:
    """How many lines the input has (a last one without a newline counts)."""
    count, last = 0, b"\n"
    with open(source, "rb") as f:
        while block := f.read(1 << 20):
            count, last = count + block.count(b"\n"), block[-1:]
    return count + (last != b"\n")


def _answer(batch: Batch, lines: BinaryIO, out: BinaryIO, done: Body, total: int, progress: Progress) -> Body:
    """Answer the input from `lines`' position on, a chunk at a time, checkpointing as it goes."""
    saved = time.monotonic()
    while chunk := [raw for raw in (lines.readline() for _ in range(CHUNK_LINES)) if raw]:
        parsed = [parse(raw.rstrip(b"\r\n"), batch.recipe_type) for raw in chunk if raw.strip()]
        answers, failed = batch.answer(parsed)
        out.write(b"\n".join(answers) + b"\n" if answers else b"")
        done = {"linesDone": done["linesDone"] + len(parsed), "linesFailed": done["linesFailed"] + failed,
                "inputBytes": lines.tell(), "outputBytes": out.tell()}
        if time.monotonic() - saved >= CHECKPOINT_S:
            out.flush()
            os.fsync(out.fileno())
            progress(**done, message=f"{done['linesDone']:,} of {total:,} lines")
            saved = time.monotonic()
    out.flush()
    os.fsync(out.fileno())
    return done


class BatchFiles:
    """The job's input on this disk, its partial output in the spool (a name of the job's, so a
    restart finds it), and where the output goes when it is whole."""

    def __init__(self, ctx: Ctx, job: Body) -> None:
        self.locations, self.s3 = ctx.settings.locations, S3Files(ctx.settings.s3_endpoint_url)
        self.spool = ctx.settings.data_dir / "spool"
        self.spool.mkdir(parents=True, exist_ok=True)
        job_id = job["batchInferenceJobArn"].rsplit("/", 1)[1]
        self.source_location = job["jobInput"]["s3DataSource"]["path"]
        self.destination = job["jobOutput"]["s3DataDestination"]["path"]
        self.partial = self.spool / f"batch-{job_id}.out"
        self.fetched = self.spool / f"batch-{job_id}.in"
        self.name = self.source_location.rstrip("/").rsplit("/", 1)[-1] + ".out"

    def _where(self, member: str, location: str) -> Path | S3Location:
        try:
            return self.locations.check(location)
        except LocationRefused as exc:
            raise JobFailed(f"{member}: {exc}") from None

    @contextlib.contextmanager
    def input(self) -> Iterator[Path]:
        where = self._where("jobInput.s3DataSource.path", self.source_location)
        if isinstance(where, S3Location):
            try:
                yield self.s3.fetch(where, self.fetched)
            except S3Error as exc:
                raise JobFailed(f"jobInput.s3DataSource.path {exc}") from None
            finally:
                self.fetched.unlink(missing_ok=True)
            return
        if not where.is_file():
            raise JobFailed(f"jobInput.s3DataSource.path {self.source_location!r}: no such file")
        yield where

    def deliver(self) -> None:
        """The whole output to `<destination>/<input name>.out`, replacing one a rerun left."""
        where = self._where("jobOutput.s3DataDestination.path", self.destination)
        if isinstance(where, S3Location):
            try:
                self.s3.upload(self.partial, where.child(self.name))
            except S3Error as exc:
                raise JobFailed(f"jobOutput.s3DataDestination.path {exc}") from None
            self.partial.unlink()
            return
        where.mkdir(parents=True, exist_ok=True)
        final = confined(where / self.name, self.locations.roots)
        staged = final.with_name(f".{final.name}.partial")
        shutil.move(self.partial, staged)
        os.replace(staged, final)
