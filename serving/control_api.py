"""The control plane: Amazon Personalize's JSON 1.1 protocol on `POST /`.

`X-Amz-Target: AmazonPersonalize.<Operation>` picks a handler from OPERATIONS; an
operation we do not implement yet answers UnknownOperationException naming it.
Handlers take the parsed request (a wire model) and return the response dict.
"""
from __future__ import annotations

import asyncio
import base64
import inspect
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.responses import Response

from kernel.contract import dataset_group_name
from kernel.settings import Settings
from serving import service_model
from serving.accounts import caller, caller_region, region_of, visible
from serving.control_store import AlreadyExists, Body, ControlStore, camel
from serving.errors import (
    InvalidInputException,
    InvalidNextTokenException,
    LimitExceededException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
    ResourceNotFoundException,
    UnknownOperationException,
    validation_message,
)
from serving.jobs import PENDING, RUNNING
from serving.public_trackers import PublicTrackerError, from_tags
from serving.quotas import quota
from serving.quotas import refusal as quota_refusal
from serving.wire import Arn
from stream.erasure import erase_group

if TYPE_CHECKING:
    from serving.datasets_api import DatasetFiles
    from serving.models import Models

TARGET_PREFIX = "AmazonPersonalize."
Name = Annotated[str, StringConstraints(min_length=1, max_length=63,
                                        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$")]


class Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Tag(Req):
    tagKey: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    tagValue: Annotated[str, StringConstraints(min_length=0, max_length=256)]


class Page(Req):
    nextToken: Annotated[str, StringConstraints(max_length=1500)] | None = None
    maxResults: Annotated[int, Field(ge=1, le=100)] | None = None


class CreateDatasetGroup(Req):
    name: Name
    roleArn: str | None = None
    kmsKeyArn: str | None = None
    domain: Annotated[str, StringConstraints(pattern=r"^(ECOMMERCE|VIDEO_ON_DEMAND)$")] | None = None
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None


class DatasetGroupArn(Req):
    datasetGroupArn: Arn


class ListByDatasetGroup(Page):
    datasetGroupArn: Arn | None = None


class CreateEventTracker(Req):
    name: Name
    datasetGroupArn: Arn
    tags: Annotated[list[Tag], Field(max_length=200)] | None = None


class EventTrackerArn(Req):
    eventTrackerArn: Arn


@dataclass
class Ctx:
    settings: Settings
    resources: ControlStore
    datasets: DatasetFiles
    models: Models | None = None  # deployed artifacts (the API process; not the trainer)
    wake_jobs: Callable[[], None] = field(default=lambda: None)

    @property
    def account(self) -> str:
        """The caller's account (serving/accounts.py): what it creates is named in it."""
        return caller(self.settings.account)

    @property
    def region(self) -> str:
        """The caller's region (serving/accounts.py): what it creates is named in it too."""
        return caller_region(self.settings.region)

    def arn(self, kind: str, name: str) -> str:
        return self.settings.arn(kind, name, self.account, self.region)

    def sees(self, arn: str) -> bool:
        """Whether `arn` is the caller's: of its account and its region."""
        return visible(arn, self.account, self.region)


# a handler that waits on I/O (erasing data) returns an awaitable, run on the event loop
Handler = Callable[[Any, Ctx], Body | Awaitable[Body]]
OPERATIONS: dict[str, tuple[type[Req], Handler]] = {}


def operation(name: str, model: type[Req]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = (model, fn)
        return fn
    return register


def paginate(items: list[Body], page: Page, key: str, summary: tuple[str, ...]) -> Body:
    """Personalize-style pages: an opaque nextToken and 1..100 results (default 100)."""
    start = 0
    if page.nextToken:
        try:
            start = int(base64.urlsafe_b64decode(page.nextToken.encode()).decode())
        except ValueError:
            raise InvalidNextTokenException("the nextToken is not valid") from None
    end = start + (page.maxResults or 100)
    out: Body = {key: [{k: it[k] for k in summary if k in it} for it in items[start:end]]}
    if end < len(items):
        out["nextToken"] = base64.urlsafe_b64encode(str(end).encode()).decode()
    return out


def listed(ctx: Ctx, kind: str, parent: str | None = None) -> list[Body]:
    """What a List operation shows: the caller's account's resources in its region only; a
    parent of another account or region is not found, as it is for every other operation."""
    if parent is not None and not ctx.sees(parent):
        raise ResourceNotFoundException(f"{parent} does not exist")
    return ctx.resources.list(kind, parent, account=ctx.account, region=ctx.region)


@dataclass(frozen=True)
class Family:
    """A resource family's Describe and List, which every plain family answers alike: Describe
    the caller's resource by its ARN (`<kind>Arn`), answered as `<kind>`; List the caller's
    resources (of the parent the request's `parent` field names) in pages of `summary`,
    answered as `<kind>s`. `describe_and_list` registers both operations."""
    kind: str  # the control store's kind, the ARN's resource type: "dataset-import-job"
    arn_request: type[Req]
    list_request: type[Req]
    summary: tuple[str, ...]
    parent: str | None = None
    list_key: str | None = None  # where Personalize's answer names the list otherwise

    @property
    def operations(self) -> tuple[str, str]:
        pascal = camel(self.kind)[0].upper() + camel(self.kind)[1:]
        return f"Describe{pascal}", f"List{pascal}s"


def describe_and_list(family: Family) -> Family:
    key, noun = camel(family.kind), family.kind.replace("-", " ")

    def describe(req: Req, ctx: Ctx) -> Body:
        return {key: require(ctx, getattr(req, key + "Arn"), family.kind, noun)}

    def list_all(req: Page, ctx: Ctx) -> Body:
        parent = getattr(req, family.parent) if family.parent else None
        return paginate(listed(ctx, family.kind, parent), req, family.list_key or key + "s", family.summary)

    describing, listing = family.operations
    operation(describing, family.arn_request)(describe)
    operation(listing, family.list_request)(list_all)
    return family


def within_quota(ctx: Ctx, kind: str) -> None:
    """Refuse a create that would take the caller's account past its quota of `kind` in its
    region (AWS's quotas are per account and region)."""
    limit = quota(ctx.settings.quotas, ctx.account, kind)
    if limit is not None and len(ctx.resources.list(kind, account=ctx.account, region=ctx.region)) >= limit:
        raise LimitExceededException(quota_refusal(kind, limit))


def require(ctx: Ctx, arn: str, kind: str, what: str) -> Body:
    """The resource, if it exists in the caller's account and region; another account's or
    another region's is not found."""
    body = ctx.resources.get(arn, kind) if ctx.sees(arn) else None
    if body is None:
        raise ResourceNotFoundException(f"{what} {arn} does not exist")
    return body


# ---- dataset groups ----

@operation("CreateDatasetGroup", CreateDatasetGroup)
def create_dataset_group(req: CreateDatasetGroup, ctx: Ctx) -> Body:
    within_quota(ctx, "dataset-group")
    arn = ctx.arn("dataset-group", req.name)
    if other := ctx.resources.elsewhere("dataset-group", req.name, arn):
        raise ResourceAlreadyExistsException(
            f"dataset group {req.name} exists in region {region_of(other)} already ({other}); this server "
            "keeps one dataset group of a name per account in all regions: choose another name")
    body = {"name": req.name, "datasetGroupArn": arn, "status": "ACTIVE"}
    body |= {k: v for k, v in (("domain", req.domain), ("roleArn", req.roleArn),
                               ("kmsKeyArn", req.kmsKeyArn)) if v}
    try:
        ctx.resources.create("dataset-group", arn, req.name, body)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"dataset group {arn} already exists") from None
    return {"datasetGroupArn": arn, **({"domain": req.domain} if req.domain else {})}


describe_and_list(Family("dataset-group", DatasetGroupArn, Page, (
    "name", "datasetGroupArn", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "domain")))


@operation("DeleteDatasetGroup", DatasetGroupArn)
def delete_dataset_group(req: DatasetGroupArn, ctx: Ctx) -> Awaitable[Body]:
    """What the group's resources left behind goes with it (their own deletes took the rest): the
    log's records, session states, recommendations shown, archive and dataset files. The group
    is deleted last, so a group created again with its name finds none of it."""
    arn = req.datasetGroupArn
    require(ctx, arn, "dataset-group", "dataset group")
    deletions = ctx.resources.list("data-deletion-job", arn)
    if ctx.resources.count_children(arn) > len(deletions):
        raise ResourceInUseException(f"dataset group {arn} still has datasets, event trackers, solutions "
                                     "or filters; delete them first")
    if busy := [j for j in deletions if j["status"] in (PENDING, RUNNING)]:
        raise ResourceInUseException(f"dataset group {arn} has a data deletion job in progress: "
                                     f"{busy[0]['dataDeletionJobArn']}")

    async def delete() -> Body:
        group = dataset_group_name(arn)
        await erase_group(ctx.settings, group)
        await asyncio.to_thread(ctx.datasets.drop_group, group)
        for job in deletions:
            ctx.resources.delete(job["dataDeletionJobArn"])
        ctx.resources.delete(arn)
        return {}
    return delete()


# ---- event trackers (one per dataset group, as in Personalize) ----

@operation("CreateEventTracker", CreateEventTracker)
def create_event_tracker(req: CreateEventTracker, ctx: Ctx) -> Body:
    require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")
    within_quota(ctx, "event-tracker")
    if ctx.resources.count_children(req.datasetGroupArn, "event-tracker"):
        raise ResourceAlreadyExistsException(
            f"dataset group {req.datasetGroupArn} already has an event tracker")
    try:
        public = from_tags({t.tagKey: t.tagValue for t in req.tags or ()})
    except PublicTrackerError as exc:
        raise InvalidInputException(str(exc)) from None
    # an id, not the name, as Personalize's are (event-tracker/d2e0162e): names need not be unique
    arn = ctx.arn("event-tracker", uuid.uuid4().hex[:8])
    tracking_id = str(uuid.uuid4())
    body = {"name": req.name, "eventTrackerArn": arn, "accountId": ctx.account,
            "trackingId": tracking_id, "datasetGroupArn": req.datasetGroupArn, "status": "ACTIVE",
            **({"publicAccess": public} if public is not None else {})}
    try:
        ctx.resources.create("event-tracker", arn, req.name, body, parent=req.datasetGroupArn)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"event tracker {arn} already exists") from None
    return {"eventTrackerArn": arn, "trackingId": tracking_id}


describe_and_list(Family("event-tracker", EventTrackerArn, ListByDatasetGroup, (
    "name", "eventTrackerArn", "status", "creationDateTime", "lastUpdatedDateTime"),
    parent="datasetGroupArn"))


@operation("DeleteEventTracker", EventTrackerArn)
def delete_event_tracker(req: EventTrackerArn, ctx: Ctx) -> Body:
    require(ctx, req.eventTrackerArn, "event-tracker", "event tracker")
    ctx.resources.delete(req.eventTrackerArn)
    return {}


# ---- the dispatcher ----

def dispatch(target: str | None, raw: bytes, ctx: Ctx) -> Body | Awaitable[Body]:
    if not target or not target.startswith(TARGET_PREFIX):
        raise InvalidInputException(f"missing or unknown X-Amz-Target header: {(target or '')[:80]!r}; "
                                    f"expected {TARGET_PREFIX}<Operation>")
    op = target[len(TARGET_PREFIX):]
    if op not in OPERATIONS:
        if not re.fullmatch(r"[A-Za-z]+", op):
            raise InvalidInputException(f"malformed operation name {op[:80]!r}")
        raise UnknownOperationException(f"operation {op[:80]} is not implemented by openpersonalize yet")
    model, handler = OPERATIONS[op]
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInputException(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputException("request body must be a JSON object")
    service_model.check("personalize", op, payload)  # Refused: what Personalize itself refuses
    try:
        req = model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInputException(validation_message(list(exc.errors()))) from None
    return handler(req, ctx)


def make_router(ctx: Ctx) -> APIRouter:
    router = APIRouter(tags=["control plane (JSON 1.1)"])

    @router.post("/", summary="Amazon Personalize control plane (X-Amz-Target dispatch)")
    async def control_plane(request: Request) -> Response:
        body = dispatch(request.headers.get("x-amz-target"), await request.body(), ctx)
        if inspect.isawaitable(body):
            body = await body
        return Response(orjson.dumps(body), media_type="application/x-amz-json-1.1")

    return router
