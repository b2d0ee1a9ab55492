"""The control plane's data side: schemas, datasets, dataset import and export jobs, data
deletion jobs.

Handlers register in control_api's dispatcher. Jobs are stored CREATE PENDING and run by
serving.jobs; the import/export work itself is training's (`DatasetFiles`), handed in by
the composition root, because serving never imports training.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Annotated, Literal, Protocol

from pydantic import Field, StringConstraints

from kernel.archive import Erased
from kernel.contract import dataset_group_name
from kernel.dataset_schema import DATASET_TYPES, Schema, SchemaError, check_dataset_type, parse_schema
from kernel.locations import LocationRefused
from serving.control_api import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Page,
    Req,
    Tag,
    describe_and_list,
    listed,
    operation,
    paginate,
    require,
    within_quota,
)
from serving.errors import (
    InvalidInputException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
)
from serving.jobs import ACTIVE, FAILED, PENDING, RUNNING, JobFailed, Progress
from serving.resources import AlreadyExists, Body
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
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None


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
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None
    importMode: Literal["FULL", "INCREMENTAL"] | None = None
    publishAttributionMetricsToS3: bool | None = None


class ImportJobArn(Req):
    datasetImportJobArn: Arn


class S3DataDestination(Req):
    path: Location
    kmsKeyArn: str | None = None


class JobOutput(Req):
    s3DataDestination: S3DataDestination


class CreateDatasetExportJob(Req):
    jobName: Name
    datasetArn: Arn
    ingestionMode: Literal["BULK", "PUT", "ALL"] | None = None
    roleArn: str
    jobOutput: JobOutput
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None


class ExportJobArn(Req):
    datasetExportJobArn: Arn


class CreateDataDeletionJob(Req):
    jobName: Name
    datasetGroupArn: Arn
    dataSource: DataSource
    roleArn: Annotated[str, StringConstraints(max_length=256)]
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None


class DeletionJobArn(Req):
    dataDeletionJobArn: Arn


def _create(ctx: Ctx, kind: str, arn: str, name: str, body: Body, parent: str | None = None) -> None:
    try:
        ctx.resources.create(kind, arn, name, body, parent=parent)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"{kind.replace('-', ' ')} {arn} already exists") from None


def _allowed(ctx: Ctx, member: str, location: str) -> None:
    """Refuse, when the job is created, a location the job would not be allowed to use."""
    try:
        ctx.settings.locations.check(location)
    except LocationRefused as exc:
        raise InvalidInputException(f"{member}: {exc}") from None


def _readable_source(ctx: Ctx, location: str | None) -> None:
    """A job's `dataSource.dataLocation`: given, and one the job may read."""
    if not location:
        raise InvalidInputException("dataSource.dataLocation is required")
    _allowed(ctx, "dataSource.dataLocation", location)


def _busy_jobs(ctx: Ctx, dataset_arn: str) -> list[Body]:
    return [j for kind in ("dataset-import-job", "dataset-export-job")
            for j in ctx.resources.list(kind, dataset_arn) if j["status"] in (PENDING, RUNNING)]


# ---- schemas ----

@operation("CreateSchema", CreateSchema)
def create_schema(req: CreateSchema, ctx: Ctx) -> Body:
    within_quota(ctx, "schema")
    try:
        parse_schema(req.schema_)
    except SchemaError as exc:
        raise InvalidInputException(f"schema: {exc}") from None
    arn = ctx.arn("schema", req.name)
    body = {"name": req.name, "schemaArn": arn, "schema": req.schema_}
    _create(ctx, "schema", arn, req.name, body | ({"domain": req.domain} if req.domain else {}))
    return {"schemaArn": arn}


describe_and_list(Family("schema", SchemaArn, Page, (
    "name", "schemaArn", "creationDateTime", "lastUpdatedDateTime", "domain")))


@operation("DeleteSchema", SchemaArn)
def delete_schema(req: SchemaArn, ctx: Ctx) -> Body:
    require(ctx, req.schemaArn, "schema", "schema")
    if user := ctx.resources.find("dataset", "schemaArn", req.schemaArn):
        raise ResourceInUseException(f"schema {req.schemaArn} is used by dataset {user['datasetArn']}")
    ctx.resources.delete(req.schemaArn)
    return {}


# ---- datasets (one per type per dataset group: the type is in the ARN) ----

def _schema_for(ctx: Ctx, schema_arn: str, dataset_type: str) -> Schema:
    text = require(ctx, schema_arn, "schema", "schema")["schema"]
    schema = parse_schema(text)
    try:
        check_dataset_type(schema, dataset_type)
    except SchemaError as exc:
        raise InvalidInputException(f"schema {schema_arn} does not fit a {dataset_type} dataset: "
                                    f"{exc}") from None
    return schema


@operation("CreateDataset", CreateDataset)
def create_dataset(req: CreateDataset, ctx: Ctx) -> Body:
    within_quota(ctx, "dataset")
    kind = req.datasetType.upper()
    if kind not in DATASET_TYPES:
        raise InvalidInputException(f"datasetType {req.datasetType!r} is not one of "
                                    f"{', '.join(DATASET_TYPES)}")
    require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")
    _schema_for(ctx, req.schemaArn, kind)
    arn = ctx.arn("dataset", f"{req.datasetGroupArn.rsplit('/', 1)[1]}/{kind}")
    body = {"name": req.name, "datasetArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "datasetType": kind, "schemaArn": req.schemaArn, "status": "ACTIVE"}
    try:
        ctx.resources.create("dataset", arn, req.name, body, parent=req.datasetGroupArn)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"dataset group {req.datasetGroupArn} already has an "
                                             f"{kind} dataset ({arn})") from None
    return {"datasetArn": arn}


describe_and_list(Family("dataset", DatasetArn, ListByDatasetGroup, (
    "name", "datasetArn", "datasetType", "status", "creationDateTime", "lastUpdatedDateTime"),
    parent="datasetGroupArn"))


@operation("UpdateDataset", UpdateDataset)
def update_dataset(req: UpdateDataset, ctx: Ctx) -> Body:
    """A new schema may add fields; fields already in the data keep their name and type."""
    dataset = require(ctx, req.datasetArn, "dataset", "dataset")
    new = _schema_for(ctx, req.schemaArn, dataset["datasetType"])
    old = parse_schema(require(ctx, dataset["schemaArn"], "schema", "schema")["schema"])
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
    dataset = require(ctx, req.datasetArn, "dataset", "dataset")
    if _busy_jobs(ctx, req.datasetArn):
        raise ResourceInUseException(f"dataset {req.datasetArn} has a job in progress")
    for job in ctx.resources.list("dataset-import-job", req.datasetArn):
        ctx.resources.delete(job["datasetImportJobArn"])
    for job in ctx.resources.list("dataset-export-job", req.datasetArn):
        ctx.resources.delete(job["datasetExportJobArn"])
    ctx.resources.delete(req.datasetArn)

    async def drop() -> Body:
        await asyncio.to_thread(ctx.datasets.drop, dataset_group_name(dataset["datasetGroupArn"]),
                                dataset["datasetType"])
        return {}
    return drop()


# ---- import and export jobs ----

@operation("CreateDatasetImportJob", CreateDatasetImportJob)
def create_import_job(req: CreateDatasetImportJob, ctx: Ctx) -> Body:
    require(ctx, req.datasetArn, "dataset", "dataset")
    _readable_source(ctx, req.dataSource.dataLocation)
    if busy := _busy_jobs(ctx, req.datasetArn):
        job = busy[0].get("datasetImportJobArn") or busy[0]["datasetExportJobArn"]
        raise ResourceInUseException(f"dataset {req.datasetArn} already has a job in progress: {job}")
    arn = ctx.arn("dataset-import-job", req.jobName)
    body = {"jobName": req.jobName, "datasetImportJobArn": arn, "datasetArn": req.datasetArn,
            "dataSource": {"dataLocation": req.dataSource.dataLocation}, "status": PENDING,
            "importMode": req.importMode or "FULL",
            "publishAttributionMetricsToS3": bool(req.publishAttributionMetricsToS3)}
    _create(ctx, "dataset-import-job", arn, req.jobName,
            body | ({"roleArn": req.roleArn} if req.roleArn else {}), parent=req.datasetArn)
    ctx.wake_jobs()
    return {"datasetImportJobArn": arn}


describe_and_list(Family("dataset-import-job", ImportJobArn, ListByDataset, (
    "datasetImportJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "importMode"), parent="datasetArn"))


@operation("CreateDatasetExportJob", CreateDatasetExportJob)
def create_export_job(req: CreateDatasetExportJob, ctx: Ctx) -> Body:
    require(ctx, req.datasetArn, "dataset", "dataset")
    _allowed(ctx, "jobOutput.s3DataDestination.path", req.jobOutput.s3DataDestination.path)
    arn = ctx.arn("dataset-export-job", req.jobName)
    body = {"jobName": req.jobName, "datasetExportJobArn": arn, "datasetArn": req.datasetArn,
            "ingestionMode": req.ingestionMode or "PUT", "roleArn": req.roleArn, "status": PENDING,
            "jobOutput": req.jobOutput.model_dump(exclude_none=True)}
    _create(ctx, "dataset-export-job", arn, req.jobName, body, parent=req.datasetArn)
    ctx.wake_jobs()
    return {"datasetExportJobArn": arn}


describe_and_list(Family("dataset-export-job", ExportJobArn, ListByDataset, (
    "datasetExportJobArn", "jobName", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason"),
    parent="datasetArn"))


# ---- data deletion jobs: some users' data out of a dataset group ----

def _deletion_job(body: Body) -> Body:
    return {k: body[k] for k in DELETION_JOB if k in body} | {
        "status": DELETION_STATUS.get(body["status"], body["status"])}


@operation("CreateDataDeletionJob", CreateDataDeletionJob)
def create_deletion_job(req: CreateDataDeletionJob, ctx: Ctx) -> Body:
    require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")
    _readable_source(ctx, req.dataSource.dataLocation)
    jobs = ctx.resources.list("data-deletion-job", req.datasetGroupArn)
    if len(pending := [j for j in jobs if j["status"] == PENDING]) >= MAX_PENDING_DELETIONS:
        raise LimitExceededException(f"dataset group {req.datasetGroupArn} already has {len(pending)} "
                                     f"data deletion jobs PENDING, the most it may have")
    arn = ctx.arn("data-deletion-job", req.jobName)
    body = {"jobName": req.jobName, "dataDeletionJobArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "dataSource": {"dataLocation": req.dataSource.dataLocation}, "roleArn": req.roleArn,
            "status": PENDING}
    _create(ctx, "data-deletion-job", arn, req.jobName, body, parent=req.datasetGroupArn)
    ctx.wake_jobs()
    return {"dataDeletionJobArn": arn}


@operation("DescribeDataDeletionJob", DeletionJobArn)
def describe_deletion_job(req: DeletionJobArn, ctx: Ctx) -> Body:
    return {"dataDeletionJob": _deletion_job(require(ctx, req.dataDeletionJobArn, "data-deletion-job",
                                                     "data deletion job"))}


@operation("ListDataDeletionJobs", ListByDatasetGroup)
def list_deletion_jobs(req: ListByDatasetGroup, ctx: Ctx) -> Body:
    """Newest first, as Personalize lists them."""
    jobs = [_deletion_job(j) for j in reversed(listed(ctx, "data-deletion-job", req.datasetGroupArn))]
    return paginate(jobs, req, "dataDeletionJobs",
                    ("dataDeletionJobArn", "datasetGroupArn", "jobName", "status", "creationDateTime",
                     "lastUpdatedDateTime", "failureReason"))


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
    return {"progress": {"rowsDone": imported.rows, "rowsSkipped": imported.skipped,
                         "message": imported.summary}}


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
