"""Batch inference jobs: CreateBatchInferenceJob, DescribeBatchInferenceJob, ListBatchInferenceJobs.

A job answers Personalize's batch input, one line per request, with what GetRecommendations
or GetPersonalizedRanking gives (serving.batch_recommend); its files are serving.batch_files'.
It runs in the API process's job runner, which has the models.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from kernel.artifact_store import ArtifactError
from kernel.contract import dataset_group_name
from kernel.recipes import RECIPES
from serving.batch_files import run_lines
from serving.batch_recommend import Batch, Line
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

Location = Annotated[str, StringConstraints(min_length=1, max_length=256)]
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
    if RECIPES[version["recipeArn"]].segments_users:
        raise InvalidInputException(f"solution version {req.solutionVersionArn} makes user segments: "
                                    "use CreateBatchSegmentJob")
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
    job_id = "batch-" + job["batchInferenceJobArn"].rsplit("/", 1)[1]
    return run_lines(ctx.settings, job, job_id, _batch(ctx, job), progress)


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
