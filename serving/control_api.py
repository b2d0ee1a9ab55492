"""The control plane: Amazon Personalize's JSON 1.1 protocol on `POST /`.

`X-Amz-Target: AmazonPersonalize.<Operation>` picks a handler from OPERATIONS; an
operation we do not implement yet answers UnknownOperationException naming it.
Handlers take the parsed request (a wire model) and return the response dict.
"""
from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.responses import Response

from serving.errors import (
    InvalidInputException,
    InvalidNextTokenException,
    ResourceAlreadyExistsException,
    ResourceInUseException,
    ResourceNotFoundException,
    UnknownOperationException,
    validation_message,
)
from serving.resources import AlreadyExists, Body, ResourceStore
from stream.settings import Settings

if TYPE_CHECKING:
    from serving.datasets_api import DatasetFiles
    from serving.models import Models

TARGET_PREFIX = "AmazonPersonalize."
Name = Annotated[str, StringConstraints(min_length=1, max_length=63,
                                        pattern=r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$")]
Arn = Annotated[str, StringConstraints(max_length=256, pattern=r"arn:([a-z\d-]+):personalize:.*:.*:.+")]


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
    resources: ResourceStore
    datasets: DatasetFiles
    models: Models | None = None  # deployed artifacts (the API process; not the trainer)
    wake_jobs: Callable[[], None] = field(default=lambda: None)


Handler = Callable[[Any, Ctx], Body]
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


def require(ctx: Ctx, arn: str, kind: str, what: str) -> Body:
    body = ctx.resources.get(arn, kind)
    if body is None:
        raise ResourceNotFoundException(f"{what} {arn} does not exist")
    return body


# ---- dataset groups ----

@operation("CreateDatasetGroup", CreateDatasetGroup)
def create_dataset_group(req: CreateDatasetGroup, ctx: Ctx) -> Body:
    arn = ctx.settings.arn("dataset-group", req.name)
    body = {"name": req.name, "datasetGroupArn": arn, "status": "ACTIVE"}
    body |= {k: v for k, v in (("domain", req.domain), ("roleArn", req.roleArn),
                               ("kmsKeyArn", req.kmsKeyArn)) if v}
    try:
        ctx.resources.create("dataset-group", arn, req.name, body)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"dataset group {arn} already exists") from None
    return {"datasetGroupArn": arn, **({"domain": req.domain} if req.domain else {})}


@operation("DescribeDatasetGroup", DatasetGroupArn)
def describe_dataset_group(req: DatasetGroupArn, ctx: Ctx) -> Body:
    return {"datasetGroup": require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")}


@operation("ListDatasetGroups", Page)
def list_dataset_groups(req: Page, ctx: Ctx) -> Body:
    return paginate(ctx.resources.list("dataset-group"), req, "datasetGroups",
                    ("name", "datasetGroupArn", "status", "creationDateTime",
                     "lastUpdatedDateTime", "failureReason", "domain"))


@operation("DeleteDatasetGroup", DatasetGroupArn)
def delete_dataset_group(req: DatasetGroupArn, ctx: Ctx) -> Body:
    require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")
    if ctx.resources.count_children(req.datasetGroupArn):
        raise ResourceInUseException(
            f"dataset group {req.datasetGroupArn} still has datasets or event trackers; "
            "delete them first")
    ctx.resources.delete(req.datasetGroupArn)
    return {}


# ---- event trackers (one per dataset group, as in Personalize) ----

@operation("CreateEventTracker", CreateEventTracker)
def create_event_tracker(req: CreateEventTracker, ctx: Ctx) -> Body:
    require(ctx, req.datasetGroupArn, "dataset-group", "dataset group")
    if ctx.resources.count_children(req.datasetGroupArn, "event-tracker"):
        raise ResourceAlreadyExistsException(
            f"dataset group {req.datasetGroupArn} already has an event tracker")
    arn = ctx.settings.arn("event-tracker", req.name)
    tracking_id = str(uuid.uuid4())
    body = {"name": req.name, "eventTrackerArn": arn, "accountId": ctx.settings.account,
            "trackingId": tracking_id, "datasetGroupArn": req.datasetGroupArn, "status": "ACTIVE"}
    try:
        ctx.resources.create("event-tracker", arn, req.name, body, parent=req.datasetGroupArn)
    except AlreadyExists:
        raise ResourceAlreadyExistsException(f"event tracker {arn} already exists") from None
    return {"eventTrackerArn": arn, "trackingId": tracking_id}


@operation("DescribeEventTracker", EventTrackerArn)
def describe_event_tracker(req: EventTrackerArn, ctx: Ctx) -> Body:
    return {"eventTracker": require(ctx, req.eventTrackerArn, "event-tracker", "event tracker")}


@operation("ListEventTrackers", ListByDatasetGroup)
def list_event_trackers(req: ListByDatasetGroup, ctx: Ctx) -> Body:
    return paginate(ctx.resources.list("event-tracker", req.datasetGroupArn), req, "eventTrackers",
                    ("name", "eventTrackerArn", "status", "creationDateTime", "lastUpdatedDateTime"))


@operation("DeleteEventTracker", EventTrackerArn)
def delete_event_tracker(req: EventTrackerArn, ctx: Ctx) -> Body:
    require(ctx, req.eventTrackerArn, "event-tracker", "event tracker")
    ctx.resources.delete(req.eventTrackerArn)
    return {}


# ---- the dispatcher ----

def dispatch(target: str | None, raw: bytes, ctx: Ctx) -> Body:
    if not target or not target.startswith(TARGET_PREFIX):
        raise InvalidInputException(f"missing or unknown X-Amz-Target header: {target!r}; "
                                    f"expected {TARGET_PREFIX}<Operation>")
    op = target[len(TARGET_PREFIX):]
    if op not in OPERATIONS:
        if not re.fullmatch(r"[A-Za-z]+", op):
            raise InvalidInputException(f"malformed operation name {op!r}")
        raise UnknownOperationException(f"operation {op} is not implemented by openpersonalize yet")
    model, handler = OPERATIONS[op]
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInputException(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputException("request body must be a JSON object")
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
        return Response(orjson.dumps(body), media_type="application/x-amz-json-1.1")

    return router
