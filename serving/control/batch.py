"""Batch inference jobs: CreateBatchInferenceJob, DescribeBatchInferenceJob, ListBatchInferenceJobs.

A job answers Personalize's batch input, one line per request, with what GetRecommendations
or GetPersonalizedRanking gives (serving.batch_recommend); its files are serving.batch_files'.
It runs in the API process's job runner, which has the models.
"""
from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from kernel.artifact_store import ArtifactError
from kernel.contract import dataset_group_name
from kernel.datasets import DatasetStore
from kernel.recipes import RECIPES
from serving.batch_files import run_lines
from serving.batch_recommend import Batch, Line
from serving.control.base import Ctx, Family, Name, Page, Req, Tags, location_allowed, operation, register
from serving.control.datasets import JobInput, JobOutput, S3DataConfig
from serving.control.filters import FILTERS, FilterInputs
from serving.control.solutions import VERSIONS
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceInUseException
from serving.filters import FilterError, FilterValueError
from serving.jobs import ACTIVE, PENDING, JobFailed, Progress
from serving.models import Model
from serving.new_items import grown
from serving.ranking import parse_exploration
from serving.recommend import User
from serving.wire import Arn

DEFAULT_RESULTS, MAX_RESULTS = 25, 500  # Personalize's, for batch jobs


class BatchInferenceJobConfig(Req):
    itemExplorationConfig: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    rankingInfluence: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None


class CreateBatchInferenceJob(Req):
    jobName: Name
    solutionVersionArn: Arn
    filterArn: Arn | None = None
    numResults: int | None = None
    jobInput: JobInput
    jobOutput: JobOutput
    roleArn: Annotated[str, StringConstraints(max_length=256)]
    batchInferenceJobConfig: BatchInferenceJobConfig | None = None
    tags: Tags | None = None
    batchInferenceJobMode: Literal["BATCH_INFERENCE", "THEME_GENERATION"] | None = None
    themeGenerationConfig: dict[str, Any] | None = None


class BatchInferenceJobArn(Req):
    batchInferenceJobArn: Arn


class ListBySolutionVersion(Page):
    solutionVersionArn: Arn | None = None


def active_version(ctx: Ctx, arn: str, *, segments: bool) -> Body:
    """The ACTIVE solution version a batch job of its kind (segments, or recommendations) may use."""
    version = VERSIONS.get(ctx, arn)
    if version["status"] != ACTIVE:
        raise ResourceInUseException(f"solution version {arn} is {version['status']}; a batch job needs an "
                                     "ACTIVE one")
    if RECIPES[version["recipeArn"]].segments_users != segments:
        raise InvalidInputException(
            f"solution version {arn} is not of a USER_SEGMENTATION recipe (aws-item-affinity and its "
            "attribute form)" if segments else f"solution version {arn} makes user segments: use "
            "CreateBatchSegmentJob")
    if RECIPES[version["recipeArn"]].model == "next_best_action":
        raise InvalidInputException(f"solution version {arn} recommends actions: batch action "
                                    "recommendations are not supported; call GetActionRecommendations")
    return version


def job_files(ctx: Ctx, source: S3DataConfig, destination: S3DataConfig) -> Body:
    """A batch job's jobInput and jobOutput, once the job may use both locations."""
    location_allowed(ctx, "jobInput.s3DataSource.path", source.path)
    location_allowed(ctx, "jobOutput.s3DataDestination.path", destination.path)
    return {"jobInput": {"s3DataSource": source.model_dump(exclude_none=True)},
            "jobOutput": {"s3DataDestination": destination.model_dump(exclude_none=True)}}


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
    version = active_version(ctx, req.solutionVersionArn, segments=False)
    group = version["datasetGroupArn"]
    if req.filterArn is not None and FILTERS.get(ctx, req.filterArn)["datasetGroupArn"] != group:
        raise InvalidInputException(f"filter {req.filterArn} is not of the solution version's dataset group")
    config = (req.batchInferenceJobConfig or BatchInferenceJobConfig()).model_dump(exclude_none=True)
    try:
        parse_exploration(config.get("itemExplorationConfig"))
    except ValueError as exc:
        raise InvalidInputException(f"batchInferenceJobConfig.itemExplorationConfig: {exc}") from None
    files = job_files(ctx, req.jobInput.s3DataSource, req.jobOutput.s3DataDestination)
    arn = ctx.arn(JOBS.kind, req.jobName)
    body = {"jobName": req.jobName, "batchInferenceJobArn": arn, "solutionVersionArn": req.solutionVersionArn,
            "numResults": req.numResults or DEFAULT_RESULTS, "roleArn": req.roleArn, **files,
            "batchInferenceJobConfig": config, "batchInferenceJobMode": "BATCH_INFERENCE", "status": PENDING,
            "datasetGroupArn": group}
    body |= {"filterArn": req.filterArn} if req.filterArn else {}
    JOBS.add(ctx, arn, req.jobName, body, parent=req.solutionVersionArn, tags=req.tags)
    ctx.wake_jobs()
    return {"batchInferenceJobArn": arn}


# ---- the work the job runner calls (in a thread) ----

def run_batch_inference(ctx: Ctx, job: Body, progress: Progress) -> Body:
    return run_lines(ctx.settings, job, job["batchInferenceJobArn"], _batch(ctx, job), progress)


def job_model(ctx: Ctx, job: Body) -> tuple[Body, Model]:
    """A batch job's solution version and its model (batch jobs run where the models are: in
    the API process)."""
    version = ctx.resources.get(job["solutionVersionArn"], VERSIONS.kind)
    if version is None or version["status"] != ACTIVE:
        raise JobFailed(f"solution version {job['solutionVersionArn']} is gone or no longer ACTIVE")
    assert ctx.models is not None, "batch jobs run where the models are: the API process"
    try:
        return version, ctx.models.get(version["solutionVersionArn"], version["artifact"])
    except ArtifactError as exc:
        raise JobFailed(f"solution version {job['solutionVersionArn']}: {exc}") from None


def _batch(ctx: Ctx, job: Body) -> Batch:
    """What answers the job's lines: its version's model (scoring the items added since training,
    where it can: serving.new_items), filter and exploration."""
    version, model = job_model(ctx, job)
    if model.grows:
        items = DatasetStore.of(ctx.settings).read(dataset_group_name(job["datasetGroupArn"]), "ITEMS")
        model = grown(model, items, time.time())
    recipe = RECIPES[version["recipeArn"]]
    exploration = parse_exploration(job["batchInferenceJobConfig"].get("itemExplorationConfig")) \
        if recipe.explores else None
    allowed_for = _filter(ctx, job, model) if job.get("filterArn") else None
    return Batch(model, recipe.recipe_type, int(job["numResults"]), allowed_for, exploration)


def _filter(ctx: Ctx, job: Body, model: Model) -> Any:
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
