"""Batch segment jobs: CreateBatchSegmentJob, DescribeBatchSegmentJob, ListBatchSegmentJobs.

A job of a USER_SEGMENTATION solution version (aws-item-affinity, aws-item-attribute-affinity)
answers each input line with the users most likely to interact with an item, or with items of
the attributes the line names (serving.segments); its files are serving.batch_files'. It runs
in the API process's job runner, which has the models.
"""
from __future__ import annotations

import numpy as np

from kernel.contract import dataset_group_name
from kernel.recipes import RECIPES
from serving.batch_files import run_lines
from serving.control.base import Ctx, Family, Name, Req, Tags, operation, register
from serving.control.batch import ListBySolutionVersion, active_version, job_files, job_model
from serving.control.datasets import JobInput, JobOutput
from serving.control.filters import FilterInputs
from serving.control.store import Body
from serving.errors import InvalidInputException
from serving.filters import FilterError, allowed, parse
from serving.jobs import PENDING, JobFailed, Progress
from serving.models import Model
from serving.segments import ATTRIBUTE_AFFINITY, Segments
from serving.wire import Arn

DEFAULT_USERS, MAX_USERS = 25, 5_000_000  # Personalize's: users per segment


class CreateBatchSegmentJob(Req):
    jobName: Name
    solutionVersionArn: Arn
    filterArn: Arn | None = None
    numResults: int | None = None
    jobInput: JobInput
    jobOutput: JobOutput
    roleArn: str
    tags: Tags | None = None


class BatchSegmentJobArn(Req):
    batchSegmentJobArn: Arn


SEGMENT_JOBS = register(Family("batch-segment-job", BatchSegmentJobArn, ListBySolutionVersion, (
    "batchSegmentJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "solutionVersionArn"), parent="solutionVersionArn"))


@operation("CreateBatchSegmentJob", CreateBatchSegmentJob)
def create_batch_segment_job(req: CreateBatchSegmentJob, ctx: Ctx) -> Body:
    SEGMENT_JOBS.within_quota(ctx)
    if req.numResults is not None and not 1 <= req.numResults <= MAX_USERS:
        raise InvalidInputException(f"numResults must be between 1 and {MAX_USERS:,}")
    if req.filterArn is not None:
        raise InvalidInputException("filterArn: filters on user segments (UserID expressions) are not "
                                    "supported yet; leave it out")
    version = active_version(ctx, req.solutionVersionArn, segments=True)
    files = job_files(ctx, req.jobInput.s3DataSource, req.jobOutput.s3DataDestination)
    arn = ctx.arn(SEGMENT_JOBS.kind, req.jobName)
    body = {"jobName": req.jobName, "batchSegmentJobArn": arn, "solutionVersionArn": req.solutionVersionArn,
            "numResults": req.numResults or DEFAULT_USERS, "roleArn": req.roleArn, **files, "status": PENDING,
            "datasetGroupArn": version["datasetGroupArn"]}
    SEGMENT_JOBS.add(ctx, arn, req.jobName, body, parent=req.solutionVersionArn, tags=req.tags)
    ctx.wake_jobs()
    return {"batchSegmentJobArn": arn}


# ---- the work the job runner calls (in a thread) ----

def run_batch_segment(ctx: Ctx, job: Body, progress: Progress) -> Body:
    return run_lines(ctx.settings, job, job["batchSegmentJobArn"], _segments(ctx, job), progress)


def _segments(ctx: Ctx, job: Body) -> Segments:
    version, model = job_model(ctx, job)
    if model.runtime is None or model.runtime.user_states is None:
        raise JobFailed(f"solution version {job['solutionVersionArn']} keeps no user states; train it again")
    recipe = RECIPES[version["recipeArn"]].name
    items_with = _attributes(ctx, model, dataset_group_name(job["datasetGroupArn"])) \
        if recipe == ATTRIBUTE_AFFINITY else None
    return Segments(model, recipe, int(job["numResults"]), items_with)


def _attributes(ctx: Ctx, model: Model, group: str):  # type: ignore[no-untyped-def]
    """itemAttributes -> the codes of the items that have them: the line is a filter's WHERE
    over the items dataset (`ITEMS.GENRES = "Comedy" AND ITEMS.GENRES = "Action"`)."""
    catalog = FilterInputs(ctx).catalog(model, group)

    def items_with(attributes: str) -> np.ndarray:
        try:
            f = parse(f"INCLUDE ItemID WHERE {attributes}")
        except FilterError as exc:
            raise ValueError(f"itemAttributes: {exc}") from None
        if f.parameters or f.uses_interactions or f.uses_users or f.uses_current_item:
            raise ValueError("itemAttributes name item fields and values only (ITEMS.FIELD = \"value\")")
        return np.flatnonzero(allowed(f, catalog))
    return items_with
