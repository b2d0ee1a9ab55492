"""Wire models for the rest-json events API, with boto's camelCase member names.

Limits come from botocore's personalize-events service model (2018-03-22): each request
model first checks its body against that model itself (serving.service_model, raising
Refused), then against its own fields. `to_event` is the one place where wire becomes
domain (stream.contract.Event).
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from serving import service_model
from stream.contract import MAX_IMPRESSIONS, DatasetRecord, Event, sent_at_problem

Str256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# keys Personalize reserves and refuses inside `properties` (case-insensitive)
RESERVED_PROPERTIES = {"userid", "sessionid", "eventtype", "timestamp", "recommendationid",
                       "impression"}


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class MetricAttribution(Wire):
    eventAttributionSource: Annotated[str, StringConstraints(min_length=1, max_length=1024,
                                                             pattern=r"^[\x20-\x7E]*[\x21-\x7E]+[\x20-\x7E]*$")]


class WireEvent(Wire):
    eventId: Str256 | None = None
    eventType: Str256
    eventValue: float | None = None
    itemId: Str256 | None = None
    properties: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None
    sentAt: datetime | float
    recommendationId: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    impression: Annotated[list[Str256], Field(min_length=1, max_length=MAX_IMPRESSIONS)] | None = None
    metricAttribution: MetricAttribution | None = None

    @field_validator("properties")
    @classmethod
    def _properties_json_object(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parsed = orjson.loads(_json_object(v))
        bad = sorted(k for k in parsed if k.lower() in RESERVED_PROPERTIES)
        if bad:
            raise ValueError(f"reserved keys are not allowed: {', '.join(bad)}")
        return v

    @property
    def sent_at_epoch(self) -> float:
        return self.sentAt.timestamp() if isinstance(self.sentAt, datetime) else float(self.sentAt)


class PutEventsRequest(Wire):
    trackingId: Str256
    userId: Str256 | None = None
    sessionId: Str256
    eventList: Annotated[list[WireEvent], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutEvents"))

    @model_validator(mode="after")
    def _times_a_calendar_holds(self) -> PutEventsRequest:
        """Each sentAt within the contract's bounds, refused as botocore's model checks are (the
        member named): accepted, a time no calendar day holds would stop the archive's consumer."""
        for i, ev in enumerate(self.eventList):
            if problem := sent_at_problem(ev.sent_at_epoch):
                raise service_model.Refused(problem).under("sentAt").under(f"[{i}]").under("eventList")
        return self


def _json_object(v: str) -> str:
    try:
        parsed = orjson.loads(v)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object string ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object string")
    return v


class WireItem(Wire):
    itemId: Str256
    properties: Annotated[str, StringConstraints(min_length=1, max_length=32000)] | None = None
    _object = field_validator("properties")(lambda v: v if v is None else _json_object(v))


class WireUser(Wire):
    userId: Str256
    properties: Annotated[str, StringConstraints(min_length=1, max_length=24000)] | None = None
    _object = field_validator("properties")(lambda v: v if v is None else _json_object(v))


Arn = Annotated[str, StringConstraints(max_length=256, pattern=r"arn:([a-z\d-]+):personalize:.*:.*:.+")]


class PutItemsRequest(Wire):
    datasetArn: Arn
    items: Annotated[list[WireItem], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutItems"))


class PutUsersRequest(Wire):
    datasetArn: Arn
    users: Annotated[list[WireUser], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutUsers"))


def to_record(dataset_group: str, dataset_type: str, id_: str, fields: dict[str, object],
              now: float) -> DatasetRecord:
    """One PutItems/PutUsers entry (properties already checked against the schema)."""
    return DatasetRecord(record_id=uuid.uuid4().hex, dataset_group=dataset_group,
                         dataset_type=dataset_type, id=id_, fields=fields, received_at=now)


def to_event(wire: PutEventsRequest, ev: WireEvent, *, dataset_group: str, now: float) -> Event:
    """One PutEvents entry -> the record stored in Kafka / the embedded log."""
    return Event(
        event_id=ev.eventId or uuid.uuid4().hex,
        dataset_group=dataset_group,
        tracking_id=wire.trackingId,
        user_id=wire.userId,
        session_id=wire.sessionId,
        event_type=ev.eventType,
        event_value=ev.eventValue,
        item_id=ev.itemId,
        properties=orjson.loads(ev.properties) if ev.properties else None,
        sent_at=ev.sent_at_epoch,
        received_at=now,
        recommendation_id=ev.recommendationId,
        impression=ev.impression or [],
        attribution_source=ev.metricAttribution.eventAttributionSource
        if ev.metricAttribution else None,
    )
