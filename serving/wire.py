"""Wire models for the rest-json APIs (events and runtime), with boto's camelCase member names.

Limits come from botocore's personalize-events and personalize-runtime service models: each
request model first checks its body against that model itself (serving.service_model, raising
Refused), then against its own fields. The shapes they share (`Str256`, `Arn`, `Wire`) are
defined here once; a minimum length the service model sets (events' ids: at least one
character) is its check, so `Str256` bounds only the length that both APIs share. `to_event`
is the one place where wire becomes domain (kernel.contract.Event).
"""
from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from kernel.contract import MAX_IMPRESSIONS, DatasetRecord, Event, sent_at_problem
from kernel.next_best_action import event_type
from serving import service_model

Str256 = Annotated[str, StringConstraints(max_length=256)]
Str1000 = Annotated[str, StringConstraints(max_length=1000)]
Arn = Annotated[str, StringConstraints(max_length=256, pattern=r"arn:([a-z\d-]+):personalize:.*:.*:.+")]
# keys Personalize reserves and refuses inside `properties` (case-insensitive)
RESERVED_PROPERTIES = {"userid", "sessionid", "eventtype", "timestamp", "recommendationid",
                       "impression"}
# `properties` keys name Interactions fields (camelCase, matched ignoring case and underscores);
# these two have members of their own, which win when an event gives both
ITEM_KEY, VALUE_KEY = "itemid", "eventvalue"
MAX_ID_CHARS = 256
# arrays and objects in `properties`: a flat map in Personalize's docs. Deeper ones once got past
# the door and failed later: the log's serializer stops near 200 levels, orjson's dumps at 255 and
# json's near Python's recursion limit, each a 500 for the client
MAX_PROPERTIES_DEPTH = 32


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
        property_item(parsed)
        property_value(parsed)
        return v

    @property
    def sent_at_epoch(self) -> float:
        return self.sentAt.timestamp() if isinstance(self.sentAt, datetime) else float(self.sentAt)

    @property
    def item_id(self) -> str | None:
        """The ITEM_ID: `itemId`, else the one in `properties`, as AWS's own samples send clicks
        (`{"itemId": "270"}`) and Personalize records them."""
        if self.itemId is not None or self.properties is None:
            return self.itemId
        return property_item(orjson.loads(self.properties))

    @property
    def event_value(self) -> float | None:
        """The EVENT_VALUE: `eventValue`, else the one in `properties`."""
        if self.eventValue is not None or self.properties is None:
            return self.eventValue
        return property_value(orjson.loads(self.properties))


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


def _property(properties: dict[str, Any], key: str) -> tuple[str, Any] | None:
    """The (name, value) of the property naming `key`'s field; None when none does. Two spellings
    of one field (itemId and ITEM_ID) would leave which one counts to chance, so they are refused."""
    found = [(k, v) for k, v in properties.items() if k.replace("_", "").lower() == key]
    if len(found) > 1:
        raise ValueError(f"{' and '.join(k for k, _ in found)} name the same field; send one")
    return found[0] if found and found[0][1] is not None else None


def property_item(properties: dict[str, Any]) -> str | None:
    """An item id in `properties`: a string, or an integer as a CSV column would read it."""
    found = _property(properties, ITEM_KEY)
    if found is None:
        return None
    name, value = found
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID_CHARS:
        raise ValueError(f"{name} must be an item id (a string of 1 to {MAX_ID_CHARS} characters)")
    return value


def property_value(properties: dict[str, Any]) -> float | None:
    """An event value in `properties`: a number, or a string holding one."""
    found = _property(properties, VALUE_KEY)
    if found is None:
        return None
    name, value = found
    number = None
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(ValueError, OverflowError):
            number = float(value)
    if number is None or not math.isfinite(number):
        raise ValueError(f"{name} must be a number, not {orjson.dumps(value).decode()[:40]}")
    return number


def _json_object(v: str) -> str:
    try:
        parsed = orjson.loads(v)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"must be a JSON object string ({exc})") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object string")
    if _nests_deeper(parsed, MAX_PROPERTIES_DEPTH):
        raise ValueError(f"must nest arrays and objects at most {MAX_PROPERTIES_DEPTH} deep")
    return v


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether `value` holds arrays and objects more than `limit` deep (itself counts as 1).
    Walked without recursion: the JSON is the client's, and its depth must not be our stack's."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [x for v in level for x in (v.values() if isinstance(v, dict) else v)
                 if isinstance(x, dict | list)]
        if not level:
            return False
    return True


class WireItem(Wire):
    itemId: Str256
    properties: Annotated[str, StringConstraints(min_length=1, max_length=32000)] | None = None
    _object = field_validator("properties")(lambda v: v if v is None else _json_object(v))


class WireUser(Wire):
    userId: Str256
    properties: Annotated[str, StringConstraints(min_length=1, max_length=24000)] | None = None
    _object = field_validator("properties")(lambda v: v if v is None else _json_object(v))


class PutItemsRequest(Wire):
    datasetArn: Arn
    items: Annotated[list[WireItem], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutItems"))


class PutUsersRequest(Wire):
    datasetArn: Arn
    users: Annotated[list[WireUser], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutUsers"))


class WireAction(Wire):
    actionId: Str256
    properties: Annotated[str, StringConstraints(min_length=1, max_length=32000)] | None = None
    _object = field_validator("properties")(lambda v: v if v is None else _json_object(v))


class PutActionsRequest(Wire):
    datasetArn: Arn
    actions: Annotated[list[WireAction], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events", "PutActions"))


class WireActionInteraction(Wire):
    actionId: Str256
    userId: Str256 | None = None
    sessionId: Str256
    timestamp: datetime | float
    eventType: Str256
    eventId: Str256 | None = None
    recommendationId: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    impression: Annotated[list[Str256], Field(min_length=1, max_length=MAX_IMPRESSIONS)] | None = None
    properties: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None

    @field_validator("eventType")
    @classmethod
    def _an_action_event_type(cls, v: str) -> str:
        if event_type(v) is None:
            raise ValueError("must be Taken, Not Taken or Viewed (TAKEN, NOT_TAKEN, VIEWED)")
        return v

    @field_validator("properties")
    @classmethod
    def _properties_json_object(cls, v: str | None) -> str | None:
        """As PutEvents' `properties`: a JSON object without the keys Personalize reserves."""
        if v is not None and (bad := sorted(k for k in orjson.loads(_json_object(v))
                                            if k.lower() in RESERVED_PROPERTIES)):
            raise ValueError(f"reserved keys are not allowed: {', '.join(bad)}")
        return v

    @property
    def epoch(self) -> float:
        return self.timestamp.timestamp() if isinstance(self.timestamp, datetime) else float(self.timestamp)


class PutActionInteractionsRequest(Wire):
    trackingId: Str256
    actionInteractions: Annotated[list[WireActionInteraction], Field(min_length=1, max_length=10)]
    _botocore = model_validator(mode="before")(service_model.before("personalize-events",
                                                                    "PutActionInteractions"))

    @model_validator(mode="after")
    def _times_a_calendar_holds(self) -> PutActionInteractionsRequest:
        """Each timestamp within the contract's bounds, as PutEvents' sentAt."""
        for i, ev in enumerate(self.actionInteractions):
            if problem := sent_at_problem(ev.epoch):
                raise service_model.Refused(problem).under("timestamp").under(f"[{i}]").under(
                    "actionInteractions")
        return self


def to_action_interaction(dataset_group: str, ev: WireActionInteraction, properties: dict[str, object],
                          columns: Collection[str], now: float) -> DatasetRecord:
    """One PutActionInteractions entry -> the ACTION_INTERACTIONS row it appends (its properties
    already checked against the schema; `columns`: the schema's fields). The user is the
    sessionId when no userId is given; the record's id is the eventId, so an event sent twice is
    one row; eventType is stored as sent."""
    row: dict[str, object] = {"USER_ID": ev.userId or ev.sessionId, "ACTION_ID": ev.actionId,
                              "TIMESTAMP": int(ev.epoch), "EVENT_TYPE": ev.eventType}
    if ev.recommendationId is not None and "RECOMMENDATION_ID" in columns:
        row["RECOMMENDATION_ID"] = ev.recommendationId
    if ev.impression and "IMPRESSION" in columns:
        row["IMPRESSION"] = "|".join(ev.impression)
    return DatasetRecord(record_id=ev.eventId or uuid.uuid4().hex, dataset_group=dataset_group,
                         dataset_type="ACTION_INTERACTIONS", id=str(row["USER_ID"]),
                         fields={**properties, **row}, received_at=now)  # type: ignore[arg-type]


def to_record(dataset_group: str, dataset_type: str, id_: str, fields: dict[str, object],
              now: float) -> DatasetRecord:
    """One PutItems/PutUsers entry (properties already checked against the schema)."""
    return DatasetRecord(record_id=uuid.uuid4().hex, dataset_group=dataset_group,
                         dataset_type=dataset_type, id=id_, fields=fields, received_at=now)


def to_event(wire: PutEventsRequest, ev: WireEvent, *, dataset_group: str, now: float) -> Event:
    """One PutEvents entry -> the record stored in Kafka / the embedded log. `properties` is kept
    as sent: the fields taken from it are copies, and nothing downstream reads it as columns."""
    return Event(
        event_id=ev.eventId or uuid.uuid4().hex,
        dataset_group=dataset_group,
        tracking_id=wire.trackingId,
        user_id=wire.userId,
        session_id=wire.sessionId,
        event_type=ev.eventType,
        event_value=ev.event_value,
        item_id=ev.item_id,
        properties=orjson.loads(ev.properties) if ev.properties else None,
        sent_at=ev.sent_at_epoch,
        received_at=now,
        recommendation_id=ev.recommendationId,
        impression=ev.impression or [],
        attribution_source=ev.metricAttribution.eventAttributionSource
        if ev.metricAttribution else None,
    )


MAX_RESULTS = 500  # GetRecommendations' numResults and GetPersonalizedRanking's inputList
PROMOTION_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$"


class Promotion(Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=PROMOTION_NAME)]
    percentPromotedItems: Annotated[int, Field(ge=1, le=100)]
    filterArn: Arn
    filterValues: dict[str, Str1000] | None = None


class GetRecommendations(Wire):
    campaignArn: Arn | None = None
    recommenderArn: Arn | None = None
    itemId: Str256 | None = None
    userId: Str256 | None = None
    numResults: Annotated[int, Field(ge=0)] | None = None
    context: dict[str, Str1000] | None = None
    filterArn: Arn | None = None
    filterValues: dict[str, Str1000] | None = None
    promotions: Annotated[list[Promotion], Field(max_length=1)] | None = None
    metadataColumns: dict[str, list[str]] | None = None
    _botocore = model_validator(mode="before")(service_model.before("personalize-runtime",
                                                                    "GetRecommendations"))


class GetActionRecommendations(Wire):
    campaignArn: Arn | None = None
    userId: Str256 | None = None
    numResults: Annotated[int, Field(ge=0)] | None = None
    filterArn: Arn | None = None
    filterValues: dict[str, Str1000] | None = None
    _botocore = model_validator(mode="before")(service_model.before("personalize-runtime",
                                                                    "GetActionRecommendations"))


class GetPersonalizedRanking(Wire):
    campaignArn: Arn
    inputList: Annotated[list[Str256], Field(min_length=1, max_length=MAX_RESULTS)]
    userId: Str256
    context: dict[str, Str1000] | None = None
    filterArn: Arn | None = None
    filterValues: dict[str, Str1000] | None = None
    metadataColumns: dict[str, list[str]] | None = None
    _botocore = model_validator(mode="before")(service_model.before("personalize-runtime",
                                                                    "GetPersonalizedRanking"))
