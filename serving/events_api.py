"""The events API (rest-json): PutEvents (`POST /events`), PutItems (`POST /items`) and
PutUsers (`POST /users`): validate, store durably in the log, then answer 200.

An event naming a recommendationId but no impression list gets the items that recommendation
showed (implicit impressions, as Personalize derives them), so the log, the archive and
downstream consumers all see what was on screen."""
from __future__ import annotations

import logging
import time

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from serving.errors import InvalidInputException, ResourceNotFoundException
from serving.resources import ResourceStore
from serving.wire import PutEventsRequest, PutItemsRequest, PutUsersRequest, to_event, to_record
from stream.contract import Event, dataset_group_name
from stream.dataset_schema import Schema, SchemaError, parse_schema, record_fields
from stream.log import EventLog
from stream.store import SessionStore

log = logging.getLogger(__name__)

# personalize-events operations served here (see serving/coverage.py)
OPERATIONS = {"PutEvents", "PutItems", "PutUsers"}


class Trackers:
    """trackingId -> dataset group name, cached: PutEvents must not hit SQLite each call."""

    def __init__(self, resources: ResourceStore, ttl_s: float = 5.0) -> None:
        self.resources, self.ttl_s = resources, ttl_s
        self._cache: dict[str, tuple[float, str]] = {}

    def dataset_group(self, tracking_id: str) -> str:
        now = time.monotonic()
        hit = self._cache.get(tracking_id)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        tracker = self.resources.find("event-tracker", "trackingId", tracking_id)
        if tracker is None:
            raise ResourceNotFoundException(f"no event tracker with trackingId {tracking_id}")
        name = dataset_group_name(tracker["datasetGroupArn"])
        self._cache[tracking_id] = (now, name)
        return name


class Datasets:
    """datasetArn -> (dataset group name, schema), cached like Trackers (UpdateDataset shows
    after ttl_s)."""

    def __init__(self, resources: ResourceStore, ttl_s: float = 5.0) -> None:
        self.resources, self.ttl_s = resources, ttl_s
        self._cache: dict[str, tuple[float, str, str, Schema]] = {}

    def get(self, dataset_arn: str, dataset_type: str) -> tuple[str, Schema]:
        now = time.monotonic()
        hit = self._cache.get(dataset_arn)
        if hit is None or now - hit[0] >= self.ttl_s:
            dataset = self.resources.get(dataset_arn, "dataset")
            if dataset is None:
                raise ResourceNotFoundException(f"dataset {dataset_arn} does not exist")
            schema = parse_schema(self.resources.get(dataset["schemaArn"], "schema")["schema"])
            hit = self._cache[dataset_arn] = (now, dataset["datasetType"],
                                              dataset_group_name(dataset["datasetGroupArn"]), schema)
        if hit[1] != dataset_type:
            raise InvalidInputException(f"dataset {dataset_arn} is a {hit[1]} dataset, not {dataset_type}")
        return hit[2], hit[3]


def _fields(schema: Schema, dataset_type: str, where: str, properties: str | None) -> dict[str, object]:
    try:
        return record_fields(schema, dataset_type, orjson.loads(properties) if properties else {})
    except SchemaError as exc:
        raise InvalidInputException(f"{where}.properties: {exc}") from None


async def with_implicit_impressions(events: list[Event], store: SessionStore) -> list[Event]:
    """Events with a recommendationId and no impression list get the recommendation's items.
    An id we no longer know (expired, or the store is down) leaves the event as sent: the
    impression is a hint, the event itself must not be lost over it."""
    wanted = [e for e in events if e.recommendation_id and not e.impression]
    if not wanted:
        return events
    try:
        shown = await store.recall([e.recommendation_id for e in wanted])  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - any store failure: accept the events without them
        log.warning("implicit impressions unavailable: %s", exc)
        return events
    found = {id(e): items for e, items in zip(wanted, shown, strict=True) if items}
    return [e.model_copy(update={"impression": found[id(e)]}) if id(e) in found else e for e in events]


def make_router(event_log: EventLog, trackers: Trackers, datasets: Datasets,
                store: SessionStore) -> APIRouter:
    router = APIRouter(tags=["events (rest-json)"])

    @router.post("/events", summary="PutEvents: record item interactions for a user/session")
    async def put_events(req: PutEventsRequest) -> Response:
        group = trackers.dataset_group(req.trackingId)
        now = time.time()
        events = [to_event(req, e, dataset_group=group, now=now) for e in req.eventList]
        await event_log.append(await with_implicit_impressions(events, store))
        return Response(status_code=200)

    async def put(dataset_arn: str, kind: str, label: str, entries: list[tuple[str, str | None]]
                  ) -> Response:
        group, schema = datasets.get(dataset_arn, kind)
        now = time.time()
        await event_log.append([
            to_record(group, kind, id_, _fields(schema, kind, f"{label}[{i}]", props), now)
            for i, (id_, props) in enumerate(entries)])
        return Response(status_code=200)

    @router.post("/items", summary="PutItems: add or replace items of an ITEMS dataset")
    async def put_items(req: PutItemsRequest) -> Response:
        return await put(req.datasetArn, "ITEMS", "items", [(it.itemId, it.properties) for it in req.items])

    @router.post("/users", summary="PutUsers: add or replace users of a USERS dataset")
    async def put_users(req: PutUsersRequest) -> Response:
        return await put(req.datasetArn, "USERS", "users", [(u.userId, u.properties) for u in req.users])

    return router
