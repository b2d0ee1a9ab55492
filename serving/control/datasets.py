"""The control plane's data side: schemas, datasets, dataset import and export jobs, data
deletion jobs.

Jobs are stored CREATE PENDING and run by serving.jobs; the import/export work itself is
training's (serving.control.ports.DatasetFiles), handed in by the composition root,
because serving never imports training.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from kernel.contract import dataset_group_name
from kernel.dataset_schema import (
    ACTION_TYPES,
    DATASET_TYPES,
    Schema,
    SchemaError,
    check_dataset_type,
    check_domain,
    parse_schema,
)
from serving.attribution_report import Unpublished, publish
from serving.control.base import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Page,
    Req,
    Tags,
    location_allowed,
    operation,
    register,
)
from serving.control.groups import GROUPS
from serving.control.store import Body
from serving.errors import InvalidInputException, LimitExceededException, ResourceInUseException
from serving.jobs import ACTIVE, FAILED, PENDING, RUNNING, JobFailed, Progress
from serving.wire import Arn
from stream.erasure import erase_users

log = logging.getLogger(__name__)
Location = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Domain = Literal["ECOMMERCE", "VIDEO_ON_DEMAND"]
MAX_PENDING_DELETIONS = 5  # Personalize's: data deletion jobs PENDING per dataset group
# a data deletion job's status as Personalize names it, by the job runner's
DELETION_STATUS = {PENDING: "PENDING", RUNNING: "IN_PROGRESS", ACTIVE: "COMPLETED", FAILED: "FAILED"}
DELETION_JOB = ("jobName", "dataDeletionJobArn", "datasetGroupArn", "dataSource", "roleArn", "status",
                "numDeleted", "creationDateTime", "lastUpdatedDateTime", "failureReason")


class CreateSchema(Req):
    name: Name
    schema_: Annotated[str, StringConstraints(max_length=20000)] = Field(alias="schema")
    domain: Domain | None = None


class SchemaArn(Req):
    schemaArn: Arn


class CreateDataset(Req):
    name: Name
    schemaArn: Arn
    datasetGroupArn: Arn
    datasetType: Annotated[str, StringConstraints(max_length=256, pattern=r"^[A-Za-z_]+$")]
    tags: Tags | None = None


class DatasetArn(Req):
    datasetArn: Arn


class UpdateDataset(Req):
    datasetArn: Arn
    schemaArn: Arn


class ListByDataset(Page):
    datasetArn: Arn | None = None


class DataSource(Req):
    dataLocation: Location | None = None  # botocore's pattern is s3/http(s); we take file:// too


class CreateDatasetImportJob(Req):
    jobName: Name
    datasetArn: Arn
    dataSource: DataSource
    roleArn: str | None = None
    tags: Tags | None = None
    importMode: Literal["FULL", "INCREMENTAL"] | None = None
    publishAttributionMetricsToS3: bool | None = None


class ImportJobArn(Req):
    datasetImportJobArn: Arn


class S3DataConfig(Req):
    path: Location
    kmsKeyArn: str | None = None  # its length and pattern: the service model's


class JobInput(Req):
    s3DataSource: S3DataConfig


class JobOutput(Req):
    s3DataDestination: S3DataConfig


class CreateDatasetExportJob(Req):
    jobName: Name
    datasetArn: Arn
    ingestionMode: Literal["BULK", "PUT", "ALL"] | None = None
    roleArn: str
    jobOutput: JobOutput
    tags: Tags | None = None


class ExportJobArn(Req):
    datasetExportJobArn: Arn


class CreateDataDeletionJob(Req):
    jobName: Name
    datasetGroupArn: Arn
    dataSource: DataSource
    roleArn: Annotated[str, StringConstraints(max_length=256)]
    tags: Tags | None = None


class DeletionJobArn(Req):
    dataDeletionJobArn: Arn


def _readable_source(ctx: Ctx, location: str | None) -> None:
    """A job's `dataSource.dataLocation`: given, and one the job may read."""
    if not location:
        raise InvalidInputException("dataSource.dataLocation is required")
    location_allowed(ctx, "dataSource.dataLocation", location)


def _busy_jobs(ctx: Ctx, dataset_arn: str) -> list[Body]:
    return [j for kind in ("dataset-import-job", "dataset-export-job")
            for j in ctx.resources.list(kind, dataset_arn) if j["status"] in (PENDING, RUNNING)]


def _schema_in_use(ctx: Ctx, schema: Body) -> str | None:
    if user := ctx.resources.find(DATASETS.kind, "schemaArn", schema["schemaArn"]):
        return f"schema {schema['schemaArn']} is used by dataset {user['datasetArn']}"
    return None


def _deletion_job(body: Body) -> Body:
    return {k: body[k] for k in DELETION_JOB if k in body} | {
        "status": DELETION_STATUS.get(body["status"], body["status"])}


SCHEMAS = register(Family("schema", SchemaArn, Page, (
    "name", "schemaArn", "creationDateTime", "lastUpdatedDateTime", "domain"), takes_tags=False),
    delete=True, in_use=_schema_in_use)
DATASETS = register(Family("dataset", DatasetArn, ListByDatasetGroup, (
    "name", "datasetArn", "datasetType", "status", "creationDateTime", "lastUpdatedDateTime"),
    parent="datasetGroupArn"))
IMPORTS = register(Family("dataset-import-job", ImportJobArn, ListByDataset, (
    "datasetImportJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "importMode"), parent="datasetArn"))
EXPORTS = register(Family("dataset-export-job", ExportJobArn, ListByDataset, (
    "datasetExportJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason"),
    parent="datasetArn"))
DELETIONS = register(Family("data-deletion-job", DeletionJobArn, ListByDatasetGroup, (
    "dataDeletionJobArn", "datasetGroupArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime",
    "failureReason"), parent="datasetGroupArn", view=_deletion_job, newest_first=True))


# ---- schemas ----

@operation("CreateSchema", CreateSchema)
def create_schema(req: CreateSchema, ctx: Ctx) -> Body:
    SCHEMAS.within_quota(ctx)
    try:
        parse_schema(req.schema_)
    except SchemaError as exc:
        raise InvalidInputException(f"schema: {exc}") from None
    arn = ctx.arn("schema", req.name)
    body = {"name": req.name, "schemaArn": arn, "schema": req.schema_}
    SCHEMAS.add(ctx, arn, req.name, body | ({"domain": req.domain} if req.domain else {}))
    return {"schemaArn": arn}


# ---- datasets (one per type per dataset group: the type is in the ARN) ----

def _schema_for(ctx: Ctx, schema_arn: str, dataset_type: str, group: Body) -> Schema:
    """The schema, if it fits a dataset of that type in the group: of the group's domain (a
    domain group takes its domain's schemas only, a custom group custom ones) and its rules."""
    found = SCHEMAS.get(ctx, schema_arn)
    schema = parse_schema(found["schema"])
    domain = group.get("domain")
    if domain is not None and dataset_type in ACTION_TYPES:
        raise InvalidInputException(f"dataset group {group['datasetGroupArn']} is of the {domain} domain: "
                                    f"{dataset_type} datasets (Next-Best-Action's) are for custom dataset "
                                    "groups only")
    if found.get("domain") != domain:
        raise InvalidInputException(f"schema {schema_arn} is of the {found.get('domain') or 'custom'} "
                                    f"domain; dataset group {group['datasetGroupArn']} is of the "
                                    f"{domain or 'custom'} domain")
    try:
        check_dataset_type(schema, dataset_type)
        if domain is not None:
            check_domain(schema, dataset_type, domain)
    except SchemaError as exc:
        raise InvalidInputException(f"schema {schema_arn} does not fit a {dataset_type} dataset: "
                                    f"{exc}") from None
    return schema


@operation("CreateDataset", CreateDataset)
def create_dataset(req: CreateDataset, ctx: Ctx) -> Body:
    DATASETS.within_quota(ctx)
    kind = req.datasetType.upper()
    if kind not in DATASET_TYPES:
        raise InvalidInputException(f"datasetType {req.datasetType!r} is not one of "
                                    f"{', '.join(DATASET_TYPES)}")
    _schema_for(ctx, req.schemaArn, kind, GROUPS.get(ctx, req.datasetGroupArn))
    arn = ctx.arn("dataset", f"{req.datasetGroupArn.rsplit('/', 1)[1]}/{kind}")
    body = {"name": req.name, "datasetArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "datasetType": kind, "schemaArn": req.schemaArn, "status": "ACTIVE"}
    if kind == "ACTION_INTERACTIONS":  # its action interaction tracker, as Personalize makes one
        body["trackingId"] = str(uuid.uuid4())  # PutActionInteractions names it; DescribeDataset shows it
    DATASETS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn, tags=req.tags,
                 taken=f"dataset group {req.datasetGroupArn} already has an {kind} dataset ({arn})")
    return {"datasetArn": arn}


@operation("UpdateDataset", UpdateDataset)
def update_dataset(req: UpdateDataset, ctx: Ctx) -> Body:
    """A new schema may add fields; fields already in the data keep their name and type."""
    dataset = DATASETS.get(ctx, req.datasetArn)
    new = _schema_for(ctx, req.schemaArn, dataset["datasetType"], GROUPS.get(ctx, dataset["datasetGroupArn"]))
    old = parse_schema(SCHEMAS.get(ctx, dataset["schemaArn"])["schema"])
    for col in old.columns:
        now = new.column(col.name)
        if now is None or now.type != col.type:
            raise InvalidInputException(f"schema {req.schemaArn}: field {col.name!r} ({col.type}) of the "
                                        f"current schema must stay, with the same type")
    if _busy_jobs(ctx, req.datasetArn):
        raise ResourceInUseException(f"dataset {req.datasetArn} has a job in progress")
    update = {"schemaArn": req.schemaArn, "status": "ACTIVE"}
    ctx.resources.update(req.datasetArn, {"schemaArn": req.schemaArn, "latestDatasetUpdate": update})
    return {"datasetArn": req.datasetArn}


@operation("DeleteDataset", DatasetArn)
def delete_dataset(req: DatasetArn, ctx: Ctx) -> Awaitable[Body]:
    """The dataset's rows go with it; an INTERACTIONS dataset's events from PutEvents too."""
    dataset = DATASETS.get(ctx, req.datasetArn)
    if _busy_jobs(ctx, req.datasetArn):
        raise ResourceInUseException(f"dataset {req.datasetArn} has a job in progress")
    for jobs in (IMPORTS, EXPORTS):
        for job in ctx.resources.list(jobs.kind, req.datasetArn):
            ctx.resources.delete(job[jobs.key + "Arn"])
    ctx.resources.delete(req.datasetArn)

    async def drop() -> Body:
        await asyncio.to_thread(ctx.datasets.drop, dataset_group_name(dataset["datasetGroupArn"]),
                                dataset["datasetType"])
        return {}
    return drop()


# ---- import and export jobs ----

@operation("CreateDatasetImportJob", CreateDatasetImportJob)
def create_import_job(req: CreateDatasetImportJob, ctx: Ctx) -> Body:
    DATASETS.get(ctx, req.datasetArn)
    _readable_source(ctx, req.dataSource.dataLocation)
    if busy := _busy_jobs(ctx, req.datasetArn):
        job = busy[0].get("datasetImportJobArn") or busy[0]["datasetExportJobArn"]
        raise ResourceInUseException(f"dataset {req.datasetArn} already has a job in progress: {job}")
    arn = ctx.arn("dataset-import-job", req.jobName)
    body = {"jobName": req.jobName, "datasetImportJobArn": arn, "datasetArn": req.datasetArn,
            "dataSource": {"dataLocation": req.dataSource.dataLocation}, "status": PENDING,
            "importMode": req.importMode or "FULL",
            "publishAttributionMetricsToS3": bool(req.publishAttributionMetricsToS3)}
    IMPORTS.add(ctx, arn, req.jobName, body | ({"roleArn": req.roleArn} if req.roleArn else {}),
                parent=req.datasetArn, tags=req.tags)
    ctx.wake_jobs()
    return {"datasetImportJobArn": arn}


@operation("CreateDatasetExportJob", CreateDatasetExportJob)
def create_export_job(req: CreateDatasetExportJob, ctx: Ctx) -> Body:
    DATASETS.get(ctx, req.datasetArn)
    location_allowed(ctx, "jobOutput.s3DataDestination.path", req.jobOutput.s3DataDestination.path)
    arn = ctx.arn("dataset-export-job", req.jobName)
    body = {"jobName": req.jobName, "datasetExportJobArn": arn, "datasetArn": req.datasetArn,
            "ingestionMode": req.ingestionMode or "PUT", "roleArn": req.roleArn, "status": PENDING,
            "jobOutput": req.jobOutput.model_dump(exclude_none=True)}
    EXPORTS.add(ctx, arn, req.jobName, body, parent=req.datasetArn, tags=req.tags)
    ctx.wake_jobs()
    return {"datasetExportJobArn": arn}


# ---- data deletion jobs: some users' data out of a dataset group ----

@operation("CreateDataDeletionJob", CreateDataDeletionJob)
def create_deletion_job(req: CreateDataDeletionJob, ctx: Ctx) -> Body:
    GROUPS.get(ctx, req.datasetGroupArn)
    _readable_source(ctx, req.dataSource.dataLocation)
    jobs = ctx.resources.list("data-deletion-job", req.datasetGroupArn)
    if len(pending := [j for j in jobs if j["status"] == PENDING]) >= MAX_PENDING_DELETIONS:
        raise LimitExceededException(f"dataset group {req.datasetGroupArn} already has {len(pending)} "
                                     f"data deletion jobs PENDING, the most it may have")
    arn = ctx.arn("data-deletion-job", req.jobName)
    body = {"jobName": req.jobName, "dataDeletionJobArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "dataSource": {"dataLocation": req.dataSource.dataLocation}, "roleArn": req.roleArn,
            "status": PENDING}
    DELETIONS.add(ctx, arn, req.jobName, body, parent=req.datasetGroupArn, tags=req.tags)
    ctx.wake_jobs()
    return {"dataDeletionJobArn": arn}


# ---- the work the job runner calls (in a thread) ----

def _job_dataset(ctx: Ctx, job: Body) -> tuple[Body, Schema]:
    dataset = ctx.resources.get(job["datasetArn"], "dataset")
    if dataset is None:
        raise JobFailed(f"dataset {job['datasetArn']} was deleted")
    return dataset, parse_schema(ctx.resources.get(dataset["schemaArn"], "schema")["schema"])


def run_import(ctx: Ctx, job: Body, progress: Progress) -> Body:
    """The job's `progress` says how many rows were imported and skipped, and why. Personalize's
    DatasetImportJob has no member for that and boto3 drops the others, so the log says it too."""
    dataset, schema = _job_dataset(ctx, job)
    try:
        imported = ctx.datasets.import_csv(
            job_id=job["datasetImportJobArn"], location=job["dataSource"]["dataLocation"],
            dataset_group=dataset_group_name(dataset["datasetGroupArn"]),
            dataset_type=dataset["datasetType"], schema=schema,
            replace=job["importMode"] == "FULL", progress=progress)
    except ValueError as exc:  # training's ImportFailed: bad data, named row and column
        raise JobFailed(str(exc)) from None
    if imported.skipped:
        log.warning("%s: %s", job["datasetImportJobArn"], imported.summary)
    message = imported.summary
    if job["publishAttributionMetricsToS3"] and dataset["datasetType"] == "INTERACTIONS":
        message += "; " + _published(ctx, dataset["datasetGroupArn"], job)
    return {"progress": {"rowsDone": imported.rows, "rowsSkipped": imported.skipped, "message": message}}


def _published(ctx: Ctx, group_arn: str, job: Body) -> str:
    """Publish the group's metric attribution's report of the bulk data, as the job's last step;
    a report that cannot be written leaves the imported rows imported."""
    attribution = next(iter(ctx.resources.list("metric-attribution", group_arn)), None)
    if attribution is None:
        return "no metric attribution to publish"
    try:
        where = publish(ctx.settings, ctx.resources, attribution, job["importMode"])
    except Unpublished as exc:
        log.warning("%s: attribution metrics not published: %s", job["datasetImportJobArn"], exc)
        return f"attribution metrics not published: {exc}"
    return f"attribution metrics published to {where}" if where else "the metric attribution has no s3 path"


def run_export(ctx: Ctx, job: Body, progress: Progress) -> Body:
    dataset, schema = _job_dataset(ctx, job)
    try:
        rows = ctx.datasets.export_csv(
            job_name=job["jobName"], destination=job["jobOutput"]["s3DataDestination"]["path"],
            dataset_group=dataset_group_name(dataset["datasetGroupArn"]),
            dataset_type=dataset["datasetType"], schema=schema, ingestion_mode=job["ingestionMode"],
            progress=progress)
    except ValueError as exc:
        raise JobFailed(str(exc)) from None
    return {"progress": {"rowsDone": rows}}


def run_deletion(ctx: Ctx, job: Body, progress: Progress) -> Body:
    """The users' rows in the datasets, their archived events, their session states and,
    embedded, their records in the log; numDeleted counts the users found in any of them."""
    group_arn = job["datasetGroupArn"]
    if ctx.resources.get(group_arn, "dataset-group") is None:
        raise JobFailed(f"dataset group {group_arn} was deleted")
    try:
        users = ctx.datasets.user_ids(job["dataSource"]["dataLocation"])
    except ValueError as exc:  # training's ImportFailed: the file, the row and what is wrong
        raise JobFailed(str(exc)) from None
    progress(message=f"deleting the data of {len(users):,} user(s)")
    group = dataset_group_name(group_arn)
    erased = ctx.datasets.erase_users(group, users)
    with_state = asyncio.run(erase_users(ctx.settings, group, users, erased.sessions))
    return {"numDeleted": len(erased.users | with_state)}
