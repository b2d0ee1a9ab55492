"""PutEvents (rest-json, `POST /events`): validate, store durably, then answer 200."""
from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from serving.errors import ResourceNotFoundException
from serving.resources import ResourceStore
from serving.wire import PutEventsRequest, to_event
from stream.contract import dataset_group_name
from stream.log import EventLog

OPERATIONS = {"PutEvents"}  # personalize-events operations served here (see serving/coverage.py)


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


def make_router(event_log: EventLog, trackers: Trackers) -> APIRouter:
    router = APIRouter(tags=["events (rest-json)"])

    @router.post("/events", summary="PutEvents: record item interactions for a user/session")
    async def put_events(req: PutEventsRequest) -> Response:
        group = trackers.dataset_group(req.trackingId)
        now = time.time()
        await event_log.append([to_event(req, e, dataset_group=group, now=now)
                                for e in req.eventList])
        return Response(status_code=200)

    return router
