"""PutEvents wire validation and the one wire -> domain conversion."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from serving.service_model import Refused
from serving.wire import PutEventsRequest, to_event


def req(**event: object) -> dict[str, object]:
    e = {"eventType": "click", "sentAt": 1700000000, "itemId": "i1"} | event
    return {"trackingId": "t", "userId": "u", "sessionId": "s", "eventList": [e]}


def test_to_event_keeps_every_field_and_assigns_an_id() -> None:
    w = PutEventsRequest.model_validate(req(eventValue=2.5, properties='{"numberOfRatings": "12"}',
                                            recommendationId="r1", impression=["i1", "i2"],
                                            metricAttribution={"eventAttributionSource": "web"},
                                            sentAt=datetime(2023, 11, 14, tzinfo=UTC)))
    e = to_event(w, w.eventList[0], dataset_group="shop", now=5.0)
    assert (e.dataset_group, e.user_id, e.session_id, e.item_id) == ("shop", "u", "s", "i1")
    assert e.sent_at == 1699920000.0 and e.received_at == 5.0 and e.event_value == 2.5
    assert e.properties == {"numberOfRatings": "12"} and e.impression == ["i1", "i2"]
    assert e.attribution_source == "web" and e.recommendation_id == "r1"
    assert len(e.event_id) == 32


def test_client_event_id_is_kept_for_dedupe() -> None:
    w = PutEventsRequest.model_validate(req(eventId="abc"))
    assert to_event(w, w.eventList[0], dataset_group="g", now=0).event_id == "abc"


@pytest.mark.parametrize("bad, field", [
    ({"eventList": []}, "eventList"),
    ({"eventList": [{"eventType": "c", "sentAt": 1}] * 11}, "eventList"),
    ({"sessionId": None}, "sessionId"),
    ({"sessionId": ""}, "sessionId"),
    ({"userId": "x" * 257}, "userId"),
])
def test_request_limits_follow_botocore(bad: dict[str, object], field: str) -> None:
    with pytest.raises(Refused) as exc:  # the model checks botocore's service model first
        PutEventsRequest.model_validate(req() | bad)
    assert exc.value.path[0] == field and not exc.value.wrong_type


@pytest.mark.parametrize("event, needle", [
    ({"properties": '{"k": "' + "x" * 1100 + '"}'}, "eventList[0].properties: must be at most 1024"),
    ({"impression": [f"i{i}" for i in range(26)]}, "eventList[0].impression: must have at most 25"),
    ({"recommendationId": "r" * 41}, "eventList[0].recommendationId: must be at most 40"),
    ({"eventType": None}, "eventList[0].eventType: is required"),
])
def test_botocores_limits_on_event_fields(event: dict[str, object], needle: str) -> None:
    with pytest.raises(Refused) as exc:
        PutEventsRequest.model_validate(req(**event))
    assert exc.value.message.startswith(needle)


@pytest.mark.parametrize("event, needle", [
    ({"properties": "{not json"}, "JSON object"),
    ({"properties": "[1]"}, "JSON object"),
    ({"properties": '{"userId": "x"}'}, "reserved"),
    ({"unknownField": 1}, "not permitted"),
])
def test_event_fields_are_validated(event: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        PutEventsRequest.model_validate(req(**event))


@pytest.mark.parametrize("sent_at, needle", [
    (1e17, "eventList[1].sentAt: must be Unix epoch seconds, less than 100000000000 (milliseconds?)"),
    (1e20, "eventList[1].sentAt: must be Unix epoch seconds, less than 100000000000 (milliseconds?)"),
    (1_700_000_000_000, "eventList[1].sentAt: must be Unix epoch seconds, less than"),
    (-1, "eventList[1].sentAt: must be Unix epoch seconds, not before 1970"),
    ("1969-12-31T23:59:59Z", "eventList[1].sentAt: must be Unix epoch seconds, not before 1970"),
])
def test_a_sent_at_no_calendar_day_holds_is_refused_with_its_member(sent_at: object, needle: str) -> None:
    """Accepted, such a time stopped the archive's consumer (issue 16): refused at the door."""
    body = req()
    body["eventList"] = [*body["eventList"], {"eventType": "click", "sentAt": sent_at}]  # type: ignore[misc]
    with pytest.raises(Refused) as exc:
        PutEventsRequest.model_validate(body)
    assert exc.value.message.startswith(needle) and exc.value.type_name == "InvalidInputException"


@pytest.mark.parametrize("sent_at", [0, 1_700_000_000, 99_999_999_999.5, "5000-01-01T00:00:00Z"])
def test_sent_at_from_1970_to_the_milliseconds_bound_is_accepted(sent_at: object) -> None:
    w = PutEventsRequest.model_validate(req(sentAt=sent_at))
    assert to_event(w, w.eventList[0], dataset_group="g", now=0).sent_at == w.eventList[0].sent_at_epoch


def test_an_event_without_an_item_is_accepted_as_it_is() -> None:
    """itemId is optional in Personalize's PutEvents (a search, a page view)."""
    w = PutEventsRequest.model_validate(req(itemId=None))
    assert to_event(w, w.eventList[0], dataset_group="g", now=0).item_id is None


def event_of(**event: object):  # type: ignore[no-untyped-def]
    w = PutEventsRequest.model_validate(req(**event))
    return to_event(w, w.eventList[0], dataset_group="g", now=0)


def test_an_item_sent_in_properties_is_the_events_item() -> None:
    """AWS's getting-started notebooks send clicks this way; Personalize records the item."""
    e = event_of(itemId=None, properties='{"itemId": "270"}')
    assert e.item_id == "270" and e.properties == {"itemId": "270"}


@pytest.mark.parametrize("properties, item, value", [
    ('{"itemId": 270}', "270", None),
    ('{"ITEM_ID": "a", "eventValue": 4.5}', "a", 4.5),
    ('{"item_id": "a", "EVENT_VALUE": "3"}', "a", 3.0),
    ('{"itemId": null, "numberOfRatings": "12"}', None, None),
])
def test_properties_name_interactions_fields_ignoring_case_and_underscores(
        properties: str, item: str | None, value: float | None) -> None:
    e = event_of(itemId=None, properties=properties)
    assert (e.item_id, e.event_value) == (item, value)


def test_the_events_own_members_win_over_properties() -> None:
    e = event_of(itemId="top", eventValue=1.0, properties='{"itemId": "inner", "eventValue": 9}')
    assert (e.item_id, e.event_value) == ("top", 1.0)


@pytest.mark.parametrize("properties, needle", [
    ('{"itemId": ""}', "itemId must be an item id"),
    ('{"itemId": true}', "itemId must be an item id"),
    ('{"itemId": ["a"]}', "itemId must be an item id"),
    ('{"itemId": "' + "x" * 257 + '"}', "itemId must be an item id"),
    ('{"eventValue": "lots"}', 'eventValue must be a number, not "lots"'),
    ('{"eventValue": "nan"}', "eventValue must be a number"),
    ('{"eventValue": false}', "eventValue must be a number"),
    ('{"itemId": "a", "ITEM_ID": "b"}', "itemId and ITEM_ID name the same field"),
])
def test_a_field_in_properties_that_cannot_be_one_is_refused(properties: str, needle: str) -> None:
    """Refused rather than stored with an empty ITEM_ID (or EVENT_VALUE) that no filter sees."""
    with pytest.raises(ValidationError, match=needle):
        PutEventsRequest.model_validate(req(itemId=None, properties=properties))
