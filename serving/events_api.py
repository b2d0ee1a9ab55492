"""The events API (rest-json): PutEvents (`POST /events`), PutItems (`POST /items`),
PutUsers (`POST /users`), PutActions (`POST /actions`) and PutActionInteractions
(`POST /action-interactions`): validate, store durably in the log, then answer 200.

PutItems, PutUsers and PutActions records go to the records topics, whose dataset writer
upserts them into their datasets; PutActionInteractions events take the same path to the
ACTION_INTERACTIONS dataset, appended (kernel.datasets), where training reads them as it reads
bulk-imported rows. They name the action interaction tracker that CreateDataset gave that
dataset (DescribeDataset's trackingId), not an event tracker.

An event naming a recommendationId but no impression list gets the items that recommendation
showed (implicit impressions, as Personalize derives them), so the log, the archive and
downstream consumers all see what was on screen."""
from __future__ import annotations

import logging
import time
from typing import NamedTuple

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from kernel.contract import Event, dataset_group_name
from kernel.dataset_schema import Schema, SchemaError, parse_schema, record_fields
from serving.accounts import account_of, caller, region_of, signed_region
from serving.control.store import ControlStore
from serving.errors import InvalidInputException, ResourceNotFoundException, ThrottlingException
from serving.public_trackers import PublicAccess, access
from serving.rate_limits import NO_LIMIT, NoLimit, RateLimit
from serving.wire import (
    PutActionInteractionsRequest,
    PutActionsRequest,
    PutEventsRequest,
    PutItemsRequest,
    PutUsersRequest,
    to_action_interaction,
    to_event,
    to_record,
)
from stream.log import EventLog
from stream.shown import ShownLists

log = logging.getLogger(__name__)

# personalize-events operations served here (see serving/coverage.py)
OPERATIONS = {"PutEvents", "PutItems", "PutUsers", "PutActions", "PutActionInteractions"}


class Tracker(NamedTuple):
    at: float  # when it was read (monotonic)
    dataset_group: str  # dataset_group_name of its group
    account: str
    public: PublicAccess | None  # serving/public_trackers.py
    region: str


def elsewhere(arn_region: str, region: str | None) -> bool:
    """Whether a resource of `arn_region` is out of reach of a call signed for `region`. The
    events API is the one browsers call unsigned (public trackers): an unsigned call names no
    region, and the trackingId or dataset ARN alone says which resource it means."""
    return region is not None and arn_region != region


class Trackers:
    """trackingId -> its tracker, cached: PutEvents must not hit the control store each call.
    A tracker of another account than the caller's, or of another region than the one it
    signed for, is not found."""

    def __init__(self, resources: ControlStore, ttl_s: float = 5.0) -> None:
        self.resources, self.ttl_s = resources, ttl_s
        self._cache: dict[str, Tracker] = {}
        self._origins: tuple[float, frozenset[str]] = (-1e18, frozenset())

    def get(self, tracking_id: str) -> Tracker | None:
        now = time.monotonic()
        hit = self._cache.get(tracking_id)
        if hit is None or now - hit.at >= self.ttl_s:
            body = self.resources.find("event-tracker", "trackingId", tracking_id)
            if body is None:
                self._cache.pop(tracking_id, None)
                return None
            account = account_of(body["eventTrackerArn"])
            hit = self._cache[tracking_id] = Tracker(now, dataset_group_name(body["datasetGroupArn"]),
                                                     account, access(account, body.get("publicAccess")),
                                                     region_of(body["eventTrackerArn"]))
        return hit

    def dataset_group(self, tracking_id: str, account: str, region: str | None = None) -> str:
        tracker = self.get(tracking_id)
        if tracker is None or tracker.account != account or elsewhere(tracker.region, region):
            raise ResourceNotFoundException(f"no event tracker with trackingId {tracking_id}")
        return tracker.dataset_group

    def public_origins(self) -> frozenset[str]:
        """Every public tracker's web origins (CORS on /events), at most `ttl_s` old."""
        now = time.monotonic()
        if now - self._origins[0] >= self.ttl_s:
            self._origins = (now, frozenset(o for t in self.resources.list("event-tracker")
                                            for o in (t.get("publicAccess") or {}).get("origins", ())))
        return self._origins[1]

    def public(self, tracking_id: str) -> PublicAccess | None:
        """What an unsigned PutEvents may do with this trackingId (None: it must be signed)."""
        tracker = self.get(tracking_id)
        return tracker.public if tracker is not None else None


class Datasets:
    """datasetArn -> (dataset group name, schema), cached like Trackers (UpdateDataset shows
    after ttl_s)."""

    def __init__(self, resources: ControlStore, ttl_s: float = 5.0) -> None:
        self.resources, self.ttl_s = resources, ttl_s
        self._cache: dict[str, tuple[float, str, str, Schema]] = {}
        self._tracked: dict[str, tuple[float, str]] = {}  # action interaction trackingId -> dataset ARN

    def get(self, dataset_arn: str, dataset_type: str, account: str,
            region: str | None = None) -> tuple[str, Schema]:
        if account_of(dataset_arn) != account or elsewhere(region_of(dataset_arn), region):
            raise ResourceNotFoundException(f"dataset {dataset_arn} does not exist")
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

    def tracked(self, tracking_id: str, account: str, region: str | None = None) -> tuple[str, Schema]:
        """The ACTION_INTERACTIONS dataset whose action interaction tracker `tracking_id` is."""
        now = time.monotonic()
        hit = self._tracked.get(tracking_id)
        if hit is None or now - hit[0] >= self.ttl_s:
            body = self.resources.find("dataset", "trackingId", tracking_id)
            if body is None:
                self._tracked.pop(tracking_id, None)
                raise ResourceNotFoundException(f"no action interaction event tracker with trackingId "
                                                f"{tracking_id}")
            hit = self._tracked[tracking_id] = (now, body["datasetArn"])
        try:
            return self.get(hit[1], "ACTION_INTERACTIONS", account, region)
        except ResourceNotFoundException:  # another account's, or the dataset just went
            raise ResourceNotFoundException(f"no action interaction event tracker with trackingId "
                                            f"{tracking_id}") from None


def _fields(schema: Schema, dataset_type: str, where: str, properties: str | None) -> dict[str, object]:
    try:
        return record_fields(schema, dataset_type, orjson.loads(properties) if properties else {})
    except SchemaError as exc:
        raise InvalidInputException(f"{where}.properties: {exc}") from None


async def with_implicit_impressions(events: list[Event], shown_lists: ShownLists) -> list[Event]:
    """Events with a recommendationId and no impression list get the recommendation's items.
    An id we no longer know (expired, or the store is down) leaves the event as sent: the
    impression is a hint, the event itself must not be lost over it."""
    wanted = [e for e in events if e.recommendation_id and not e.impression]
    if not wanted:
        return events
    try:
        # one PutEvents: one tracker, so one dataset group
        shown = await shown_lists.recall(wanted[0].dataset_group,
                                   [e.recommendation_id for e in wanted])  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - any store failure: accept the events without them
        log.warning("implicit impressions unavailable: %s", exc)
        return events
    found = {id(e): items for e, items in zip(wanted, shown, strict=True) if items}
    return [e.model_copy(update={"impression": found[id(e)]}) if id(e) in found else e for e in events]


def make_router(event_log: EventLog, trackers: Trackers, datasets: Datasets,
                shown: ShownLists, account: str, tracker_rate: RateLimit | NoLimit = NO_LIMIT
                ) -> APIRouter:
    """`account`: whom a request is served as when the server has no keys; `tracker_rate`:
    PutEvents calls a second per tracker (serving/rate_limits.py)."""
    router = APIRouter(tags=["events (rest-json)"])
    public_rates: dict[str, RateLimit] = {}

    def rate_of(tracking_id: str) -> RateLimit | NoLimit:
        """A public tracker's own rate (its `opz:requests-per-second` tag), else the server's."""
        public = trackers.public(tracking_id)
        if public is None or public.requests_per_second is None:
            return tracker_rate
        limit = public_rates.get(tracking_id)
        if limit is None or limit.per_second != public.requests_per_second:
            limit = public_rates[tracking_id] = RateLimit(public.requests_per_second)
        return limit

    @router.post("/events", summary="PutEvents: record item interactions for a user/session")
    async def put_events(req: PutEventsRequest) -> Response:
        group = trackers.dataset_group(req.trackingId, caller(account), signed_region())
        rate = rate_of(req.trackingId)
        if wait := rate.wait(req.trackingId):
            raise ThrottlingException(f"Rate exceeded: event tracker {req.trackingId} takes "
                                      f"{rate.per_second:g} PutEvents calls a second", wait)
        now = time.time()
        events = [to_event(req, e, dataset_group=group, now=now) for e in req.eventList]
        await event_log.append(await with_implicit_impressions(events, shown))
        return Response(status_code=200)

    async def put(dataset_arn: str, kind: str, label: str, entries: list[tuple[str, str | None]]
                  ) -> Response:
        group, schema = datasets.get(dataset_arn, kind, caller(account), signed_region())
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

    @router.post("/actions", summary="PutActions: add or replace actions of an ACTIONS dataset")
    async def put_actions(req: PutActionsRequest) -> Response:
        return await put(req.datasetArn, "ACTIONS", "actions",
                         [(a.actionId, a.properties) for a in req.actions])

    @router.post("/action-interactions", summary="PutActionInteractions: users' interactions with actions")
    async def put_action_interactions(req: PutActionInteractionsRequest) -> Response:
        group, schema = datasets.tracked(req.trackingId, caller(account), signed_region())
        if wait := tracker_rate.wait(req.trackingId):
            raise ThrottlingException(f"Rate exceeded: action interaction tracker {req.trackingId} takes "
                                      f"{tracker_rate.per_second:g} PutActionInteractions calls a second",
                                      wait)
        now = time.time()
        await event_log.append([
            to_action_interaction(group, ev, _fields(schema, "ACTION_INTERACTIONS",
                                                     f"actionInteractions[{i}]", ev.properties),
                                  schema.names, now)
            for i, ev in enumerate(req.actionInteractions)])
        return Response(status_code=200)

    return router
