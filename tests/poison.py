"""Poison inputs, as hypothesis strategies: what a careless, broken or hostile client sends.

The events API's bodies (PutEvents, PutItems, PutUsers) come out of `put_events`, `put_items`
and `put_users` as a `Body` that knows whether it is well-formed: every field within
Personalize's bounds (botocore's personalize-events model and the documented extra rules),
at those bounds as often as between them, in any Unicode; or broken in one or more places:
past a bound, the wrong JSON type, null where a value is required, a huge string, a member the
model does not know, JSON that is no request at all. Tests hold the server to both: a
well-formed body is accepted (and each of its events must then reach every consumer), a broken
one is refused in Personalize's error shape, and no body gets a 5xx.

`json_values` and `nested` serve the parsers' own property tests (tests/unit/test_poison_inputs.py).
The strategies keep no state: the unique event ids come from the `Ids` a test hands in.
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# reproducible in CI: the same examples every run, and no example database written to disk
FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

MAX_SENT_AT = 10**11  # kernel.contract.MAX_EPOCH_SECONDS: larger is milliseconds
RESERVED = {"userid", "sessionid", "eventtype", "timestamp", "recommendationid", "impression"}
OWN_MEMBERS = {"itemid", "eventvalue"}  # properties naming these are read as those members
Draw = Callable[[st.SearchStrategy[Any]], Any]


# ---- JSON and text ----

def text(lo: int, hi: int) -> st.SearchStrategy[str]:
    """Any Unicode text (no lone surrogates: JSON cannot carry them) of lo..hi code points,
    exactly lo or hi about as often as in between."""
    short = st.text(min_size=lo, max_size=max(lo, min(hi, 24)))
    exact = st.tuples(st.text(min_size=1, max_size=6), st.sampled_from(sorted({lo, hi} - {0}))).map(
        lambda t: (t[0] * t[1])[:t[1]])
    return st.one_of(short, exact) if hi > 24 or lo > 0 else short


def past(hi: int) -> st.SearchStrategy[str]:
    """Text one code point past `hi`, or far past it (a huge string)."""
    return st.tuples(st.text(min_size=1, max_size=3), st.sampled_from([hi + 1, hi + 1, 20 * hi + 7])).map(
        lambda t: (t[0] * t[1])[:t[1]])


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Any JSON document (finite numbers, any keys)."""
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)),
        max_leaves=max_leaves)


def nested(depth: int) -> str:
    """JSON text of a 1 inside `depth` arrays (written out: json.dumps itself stops near 1,000)."""
    return "[" * depth + "1" + "]" * depth


def with_nested(key: str, depth: int) -> str:
    """A JSON object whose `key` holds `nested(depth)`."""
    return f"{{{json.dumps(key)}: {nested(depth)}}}"


WRONG_TYPES = st.sampled_from([5, 1.5, True, [], {}, ["x"], {"a": 1}])


def member(draw: Draw, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], breaking: bool) -> Any:
    """A member's value: one that breaks its rules where the body breaks it, else a good one."""
    return draw(bad if breaking else good)


ABSENT: Any = object()  # a member left out


def shaped(members: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in members.items() if v is not ABSENT}


def absent_or(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """An optional member: left out, null (JSON null is "absent" to Personalize's model) or `value`."""
    return st.one_of(st.just(ABSENT), st.none(), value)


# ---- bodies ----

@dataclass(frozen=True)
class Body:
    """One request of the events API: where it goes, the bytes sent, and whether it is well-formed.
    For a well-formed PutEvents, `events` holds its events as the server must record them (eventId,
    userId, sessionId, itemId, eventType, TIMESTAMP); for PutItems/PutUsers `ids` their ids."""
    path: str
    content: bytes
    well_formed: bool
    events: tuple[dict[str, Any], ...] = ()
    ids: tuple[str, ...] = ()
    why: str = ""  # the fields it breaks, for a failure's message


class Ids:
    """Unique event id prefixes: a well-formed event's eventId names it through the pipeline."""

    def __init__(self) -> None:
        self._next = itertools.count()

    def __call__(self) -> str:
        return f"e{next(self._next):05d}~"


def encoded(request: Any) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as bare tokens (not JSON at all)."""
    return json.dumps(request, allow_nan=True, ensure_ascii=False).encode()


GARBAGE = st.sampled_from([b"", b"{not json", b"[1, 2]", b"null", b'"text"', b"{}", b"\xff\xfe{}",
                           b'{"trackingId": ', b"[" * 5_000, b'{"eventList": [' + b"{}," * 2_000 + b"{}]}"])


def sent_ats() -> st.SearchStrategy[Any]:
    """sentAt a calendar holds: epoch seconds from 0 to just under MAX_SENT_AT, as int, float or
    an ISO 8601 string."""
    seconds = st.one_of(st.integers(0, MAX_SENT_AT - 1), st.floats(0, MAX_SENT_AT, exclude_max=True),
                        st.sampled_from([0, -0.0, MAX_SENT_AT - 1, 1.7e9]))
    iso = st.integers(0, 16_725_225_600).map(lambda s: datetime.fromtimestamp(s, UTC).isoformat())
    return st.one_of(seconds, iso)


def epoch(sent_at: Any) -> int:
    """The TIMESTAMP an export holds for `sent_at`."""
    return int(datetime.fromisoformat(sent_at).timestamp()) if isinstance(sent_at, str) else int(sent_at)


BAD_SENT_AT = st.one_of(st.sampled_from([-1, -1e-3, MAX_SENT_AT, 1e17, 1e20, 1.7e12, math.nan, math.inf,
                                         -math.inf, "yesterday", True, [], {}, None]),
                        st.floats(max_value=-1e-6), st.floats(min_value=MAX_SENT_AT))


def _property_key(key: str) -> bool:
    plain = key.replace("_", "").lower()
    return key.lower() not in RESERVED and plain not in OWN_MEMBERS


PROPERTY_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(
    st.text(max_size=5), SCALARS, max_size=2))


def event_properties() -> st.SearchStrategy[str]:
    """A `properties` string PutEvents accepts: a JSON object of 1..1024 characters whose keys are
    no reserved name and no member of their own (itemId, eventValue)."""
    return st.dictionaries(st.text(max_size=30).filter(_property_key), PROPERTY_VALUES, max_size=6).map(
        lambda d: json.dumps(d, ensure_ascii=False)).filter(lambda s: len(s) <= 1024)


BAD_PROPERTIES = st.one_of(
    st.sampled_from(["", "not json", "[1, 2]", "null", "5", '"s"', '{"userId": "u"}', '{"SessionID": 1}',
                     '{"itemId": 5.5}', '{"itemId": ""}', '{"itemId": "a", "ITEM_ID": "b"}',
                     '{"eventValue": "many"}', '{"event_value": true}', '{"eventValue": 1e999}',
                     '{"a": NaN}', json.dumps({"itemId": "x" * 257})]),
    st.sampled_from([40, 199, 200, 300, 511]).map(lambda d: with_nested("a", d)),
    st.sampled_from([300, 511]).map(lambda d: with_nested("eventValue", d)),
    past(1024).map(lambda s: json.dumps({"a": s})),
    WRONG_TYPES)


@st.composite
def wire_event(draw: Draw, ids: Ids, breaking: frozenset[str]) -> dict[str, Any]:
    """One event of a PutEvents: each member within its bounds but those named in `breaking`. Its
    eventId (1..256 characters too) starts with a prefix no other event has."""
    prefix = ids()
    length = draw(st.integers(len(prefix), 256))
    event_id = prefix + draw(text(length - len(prefix), length - len(prefix)))
    return shaped({
        "eventId": member(draw, st.just(event_id), st.one_of(st.just(""), past(256), WRONG_TYPES),
                          "eventId" in breaking),
        "eventType": member(draw, text(1, 256), st.one_of(st.just(ABSENT), st.none(), st.just(""), past(256),
                                                          WRONG_TYPES), "eventType" in breaking),
        "eventValue": member(draw, absent_or(st.floats(allow_nan=False, allow_infinity=False)),
                             st.sampled_from(["1.5", True, [], math.nan, math.inf]),
                             "eventValue" in breaking),
        "itemId": member(draw, absent_or(text(1, 256)), st.one_of(st.just(""), past(256), WRONG_TYPES),
                         "itemId" in breaking),
        "properties": member(draw, absent_or(event_properties()), BAD_PROPERTIES, "properties" in breaking),
        "sentAt": member(draw, sent_ats(), st.one_of(st.just(ABSENT), BAD_SENT_AT), "sentAt" in breaking),
        "recommendationId": member(draw, absent_or(text(1, 40)),
                                   st.one_of(st.just(""), past(40), WRONG_TYPES),
                                   "recommendationId" in breaking),
        "impression": member(draw, absent_or(st.lists(text(1, 256), min_size=1, max_size=25)), st.one_of(
            st.just([]), st.lists(text(1, 8), min_size=26, max_size=30), st.just([""]), st.just([5]),
            st.just([None]), st.just("a|b"), st.lists(past(256), min_size=1, max_size=2)),
                             "impression" in breaking),
        "metricAttribution": member(draw, absent_or(st.fixed_dictionaries({"eventAttributionSource": st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=1024).filter(
                lambda s: s.strip(" ") != "")})),
            st.sampled_from([{}, {"eventAttributionSource": "   "}, {"eventAttributionSource": "caf\u00e9"},
                             {"eventAttributionSource": "x" * 1025}, {"eventAttributionSource": None},
                             "web"]),
            "metricAttribution" in breaking),
        "unknownMember": member(draw, st.just(ABSENT), st.just("surprise"), "unknownMember" in breaking),
    })


EVENT_FIELDS = ("eventId", "eventType", "eventValue", "itemId", "properties", "sentAt", "recommendationId",
                "impression", "metricAttribution", "unknownMember")
PUT_EVENTS_FIELDS = ("trackingId", "unknownTracker", "userId", "sessionId", "eventList", "events", "entry",
                     "body")


def _breaks(draw: Draw, fields: tuple[str, ...]) -> frozenset[str]:
    """Which fields a body breaks: none (well-formed) about half the time, else one to three."""
    if draw(st.booleans()):
        return frozenset()
    return frozenset(draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3)))


@st.composite
def put_events(draw: Draw, tracking_id: str, ids: Ids) -> Body:
    """A PutEvents body for the tracker `tracking_id`."""
    top = _breaks(draw, PUT_EVENTS_FIELDS)
    if "body" in top:
        return Body("/events", draw(GARBAGE), False, why="body")
    n = draw(st.integers(1, 10))
    per_event = [_breaks(draw, EVENT_FIELDS) if "events" in top else frozenset() for _ in range(n)]
    events = [draw(wire_event(ids, b)) for b in per_event]
    broken_events = "events" in top and any(per_event)
    event_list = member(draw, st.just(events), st.one_of(
        st.just(ABSENT), st.none(), st.just([]), st.just("events"), st.just((events * 11)[:11]),
        st.just([*events[:9], None])), "eventList" in top)
    request = shaped({
        "trackingId": member(draw, st.just(tracking_id), st.one_of(
            st.just(ABSENT), st.none(), st.just(""), past(256), WRONG_TYPES), "trackingId" in top)
        if "unknownTracker" not in top else "no-such-tracker",
        "userId": member(draw, absent_or(text(1, 256)), st.one_of(st.just(""), past(256), WRONG_TYPES),
                         "userId" in top),
        "sessionId": member(draw, text(1, 256), st.one_of(st.just(ABSENT), st.none(), st.just(""), past(256),
                                                          WRONG_TYPES), "sessionId" in top),
        "eventList": event_list,
        **({"sideNote": draw(st.text(max_size=5))} if "entry" in top else {}),
    })
    well = not top - {"events"} and not broken_events
    why = ", ".join(sorted(top | {f"eventList[{i}].{f}" for i, b in enumerate(per_event) for f in b}))
    if not well:
        return Body("/events", encoded(request), False, why=why)
    user, session = request.get("userId"), request["sessionId"]
    recorded = tuple({"eventId": e["eventId"], "userId": user, "sessionId": session,
                      "itemId": e.get("itemId"), "eventType": e["eventType"], "timestamp": epoch(e["sentAt"])}
                     for e in events)
    return Body("/events", encoded(request), True, events=recorded)


# PutItems / PutUsers against these schemas (a test creates its datasets with them)
ITEMS_SCHEMA = json.dumps({"type": "record", "name": "Items", "fields": [
    {"name": "ITEM_ID", "type": "string"},
    {"name": "GENRES", "type": ["null", "string"], "categorical": True},
    {"name": "PRICE", "type": ["null", "double"]},
    {"name": "STOCK", "type": ["null", "long"]}], "version": "1.0"})
USERS_SCHEMA = json.dumps({"type": "record", "name": "Users", "fields": [
    {"name": "USER_ID", "type": "string"},
    {"name": "AGE", "type": "int"},
    {"name": "TIER", "type": ["null", "string"], "categorical": True}], "version": "1.0"})


def _spelled(name: str) -> st.SearchStrategy[str]:
    """A field's name as `properties` may spell it: camelCase, upper, or with underscores."""
    camel = name.lower() if "_" not in name else name.split("_")[0].lower() + "".join(
        p.capitalize() for p in name.split("_")[1:])
    return st.sampled_from(sorted({camel, name, name.lower(), name.capitalize()}))


def _record_properties(fields: dict[str, st.SearchStrategy[Any]], required: set[str]
                       ) -> st.SearchStrategy[Any]:
    """`properties` of a PutItems/PutUsers entry that fit the schema: each field as one of its
    spellings, with a value of its type (or null where it may be null); `required` always there."""
    @st.composite
    def make(draw: Draw) -> Any:
        chosen = {f: s for f, s in fields.items() if f in required or draw(st.booleans())}
        if not chosen and draw(st.booleans()):
            return ABSENT
        return json.dumps({draw(_spelled(f)): draw(s) for f, s in chosen.items()}, ensure_ascii=False)
    return make()


ITEM_PROPERTIES = _record_properties({
    "GENRES": st.one_of(st.none(), text(1, 60), st.lists(text(1, 8), max_size=4).map("|".join)),
    "PRICE": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                       st.integers(-(2**53), 2**53)),
    "STOCK": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))}, set())
USER_PROPERTIES = _record_properties({
    "AGE": st.integers(-(2**31), 2**31 - 1), "TIER": st.one_of(st.none(), text(1, 20))}, {"AGE"})
BAD_ITEM_PROPERTIES = st.one_of(
    st.sampled_from(["", "nope", "[]", "null", '{"color": "red"}', '{"itemId": "i"}', '{"genres": 5}',
                     '{"price": "cheap"}', '{"stock": 1.5}', f'{{"stock": {2**63}}}', '{"price": NaN}',
                     '{"genres": ["a"]}', '{"price": true}']),
    st.sampled_from([40, 300, 999, 5_000]).map(lambda d: with_nested("genres", d)),
    past(32_000).map(lambda s: json.dumps({"genres": s})), WRONG_TYPES)
BAD_USER_PROPERTIES = st.one_of(
    st.just(ABSENT), st.sampled_from(["", "{}", '{"tier": "gold"}', '{"age": null}', '{"age": "12"}',
                                      f'{{"age": {2**31}}}', '{"age": 1.5}', '{"userId": "u", "age": 1}']),
    st.sampled_from([40, 300, 999]).map(lambda d: with_nested("age", d)),
    past(24_000).map(lambda s: json.dumps({"tier": s})), WRONG_TYPES)
RECORD_FIELDS = ("datasetArn", "otherDataset", "records", "id", "properties", "entry", "body")


@st.composite
def _put_records(draw: Draw, path: str, key: str, id_key: str, arn: str, other_arn: str,
                 good_properties: st.SearchStrategy[Any], bad_properties: st.SearchStrategy[Any]) -> Body:
    top = _breaks(draw, RECORD_FIELDS)
    if "body" in top:
        return Body(path, draw(GARBAGE), False, why="body")
    n = draw(st.integers(1, 10))
    broken_at = draw(st.integers(0, n - 1))
    records = [shaped({
        id_key: member(draw, text(1, 256), st.one_of(st.just(ABSENT), st.none(), st.just(""), past(256),
                                                     WRONG_TYPES), "id" in top and i == broken_at),
        "properties": member(draw, good_properties, bad_properties, "properties" in top and i == broken_at),
        **({"extra": 1} if "entry" in top and i == broken_at else {}),
    }) for i in range(n)]
    listed = member(draw, st.just(records), st.one_of(st.just(ABSENT), st.none(), st.just([]), st.just("x"),
                                                      st.just((records * 11)[:11])), "records" in top)
    bad_arn = st.one_of(st.just(ABSENT), st.just("not-an-arn"), st.just(arn + "-gone"), past(256),
                        WRONG_TYPES)
    dataset = other_arn if "otherDataset" in top else member(draw, st.just(arn), bad_arn, "datasetArn" in top)
    request = shaped({"datasetArn": dataset, key: listed})
    if top:
        return Body(path, encoded(request), False, why=", ".join(sorted(top)))
    return Body(path, encoded(request), True, ids=tuple(r[id_key] for r in records))


def put_items(items_arn: str, users_arn: str) -> st.SearchStrategy[Body]:
    """A PutItems body for the ITEMS dataset `items_arn` (of ITEMS_SCHEMA)."""
    return _put_records("/items", "items", "itemId", items_arn, users_arn, ITEM_PROPERTIES,
                        BAD_ITEM_PROPERTIES)


def put_users(users_arn: str, items_arn: str) -> st.SearchStrategy[Body]:
    """A PutUsers body for the USERS dataset `users_arn` (of USERS_SCHEMA)."""
    return _put_records("/users", "users", "userId", users_arn, items_arn, USER_PROPERTIES,
                        BAD_USER_PROPERTIES)


def known_poison(tracking_id: str, items_arn: str, users_arn: str) -> list[Body]:
    """Bodies that once got a 5xx or stopped a consumer, sent on every run whatever hypothesis
    draws: `properties` nested deep (the log could not serialize the event, or naming what was
    wrong recursed past Python's limit) and a sentAt no calendar holds."""
    def event(**members: Any) -> Body:
        request = {"trackingId": tracking_id, "sessionId": "s", "eventList": [
            {"eventType": "click", "sentAt": 1.7e9, **members}]}
        return Body("/events", encoded(request), False, why=", ".join(members))

    def record(path: str, arn: str, key: str, id_key: str, properties: str) -> Body:
        request = {"datasetArn": arn, key: [{id_key: "x", "properties": properties}]}
        return Body(path, encoded(request), False, why="properties")

    return [*(event(properties=with_nested("a", d)) for d in (40, 199, 200, 300)),
            event(properties=with_nested("eventValue", 300)), event(sentAt=1e17), event(sentAt=1e20),
            *(record("/items", items_arn, "items", "itemId", with_nested("genres", d)) for d in (300, 999)),
            *(record("/users", users_arn, "users", "userId", with_nested("age", d)) for d in (300, 999))]
