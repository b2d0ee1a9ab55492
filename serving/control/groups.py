"""Dataset groups and their event tracker (one per group, as in Personalize)."""
from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Annotated

from pydantic import StringConstraints

from kernel.contract import dataset_group_name
from serving.accounts import region_of
from serving.control.base import Ctx, Family, ListByDatasetGroup, Name, Page, Req, Tags, operation, register
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceAlreadyExistsException, ResourceInUseException
from serving.jobs import PENDING, RUNNING
from serving.public_trackers import PUBLIC_TAGS, PublicTrackerError, from_tags
from serving.wire import Arn
from stream.erasure import erase_group


class CreateDatasetGroup(Req):
    name: Name
    roleArn: str | None = None
    kmsKeyArn: str | None = None
    domain: Annotated[str, StringConstraints(pattern=r"^(ECOMMERCE|VIDEO_ON_DEMAND)$")] | None = None
    tags: Tags | None = None


class DatasetGroupArn(Req):
    datasetGroupArn: Arn


class CreateEventTracker(Req):
    name: Name
    datasetGroupArn: Arn
    tags: Tags | None = None


class EventTrackerArn(Req):
    eventTrackerArn: Arn


GROUPS = register(Family("dataset-group", DatasetGroupArn, Page, (
    "name", "datasetGroupArn", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason",
    "domain")))
TRACKERS = register(Family("event-tracker", EventTrackerArn, ListByDatasetGroup, (
    "name", "eventTrackerArn", "status", "creationDateTime", "lastUpdatedDateTime"),
    parent="datasetGroupArn", fixed_tags=(PUBLIC_TAGS,)), delete=True)


@operation("CreateDatasetGroup", CreateDatasetGroup)
def create_dataset_group(req: CreateDatasetGroup, ctx: Ctx) -> Body:
    GROUPS.within_quota(ctx)
    arn = ctx.arn(GROUPS.kind, req.name)
    if other := ctx.resources.elsewhere(GROUPS.kind, req.name, arn):
        raise ResourceAlreadyExistsException(
            f"dataset group {req.name} exists in region {region_of(other)} already ({other}); this server "
            "keeps one dataset group of a name per account in all regions: choose another name")
    body = {"name": req.name, "datasetGroupArn": arn, "status": "ACTIVE"}
    body |= {k: v for k, v in (("domain", req.domain), ("roleArn", req.roleArn),
                               ("kmsKeyArn", req.kmsKeyArn)) if v}
    GROUPS.add(ctx, arn, req.name, body, tags=req.tags)
    return {"datasetGroupArn": arn, **({"domain": req.domain} if req.domain else {})}


@operation("DeleteDatasetGroup", DatasetGroupArn)
def delete_dataset_group(req: DatasetGroupArn, ctx: Ctx) -> Awaitable[Body]:
    """What the group's resources left behind goes with it (their own deletes took the rest): the
    log's records, session states, recommendations shown, archive and dataset files. The group
    is deleted last, so a group created again with its name finds none of it."""
    arn = req.datasetGroupArn
    GROUPS.get(ctx, arn)
    deletions = ctx.resources.list("data-deletion-job", arn)
    if ctx.resources.count_children(arn) > len(deletions):
        raise ResourceInUseException(f"dataset group {arn} still has datasets, event trackers, solutions, "
                                     "recommenders or filters; delete them first")
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


@operation("CreateEventTracker", CreateEventTracker)
def create_event_tracker(req: CreateEventTracker, ctx: Ctx) -> Body:
    GROUPS.get(ctx, req.datasetGroupArn)
    TRACKERS.within_quota(ctx)
    TRACKERS.only_one(ctx, req.datasetGroupArn)
    try:
        public = from_tags({t.tagKey: t.tagValue for t in req.tags or ()})
    except PublicTrackerError as exc:
        raise InvalidInputException(str(exc)) from None
    # an id, not the name, as Personalize's are (event-tracker/d2e0162e): names need not be unique
    arn = ctx.arn(TRACKERS.kind, uuid.uuid4().hex[:8])
    tracking_id = str(uuid.uuid4())
    body = {"name": req.name, "eventTrackerArn": arn, "accountId": ctx.account,
            "trackingId": tracking_id, "datasetGroupArn": req.datasetGroupArn, "status": "ACTIVE",
            **({"publicAccess": public} if public is not None else {})}
    TRACKERS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn, tags=req.tags)
    return {"eventTrackerArn": arn, "trackingId": tracking_id}
