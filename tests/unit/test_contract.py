"""The shared contract: topic names, keys, versioned records."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kernel.contract import (
    Event,
    InvalidEvent,
    UnknownVersion,
    dataset_group_name,
    decode_event,
    encode_event,
    events_topic,
    events_topic_pattern,
    partition_key,
)

SCHEMA = json.loads((Path(__file__).parents[2] / "kernel" / "schemas" / "event.v1.json").read_text())


def event(**kw: object) -> Event:
    base: dict[str, object] = dict(event_id="e1", dataset_group="shop", tracking_id="t",
                                   user_id="u1", session_id="s1", event_type="click",
                                   item_id="i1", sent_at=1.5, received_at=2.5)
    return Event(**(base | kw))  # type: ignore[arg-type]


def test_topic_and_key_keep_one_users_events_in_one_partition() -> None:
    assert events_topic("shop") == "opz.shop.events"
    assert partition_key(event()) == "u1"
    assert partition_key(event(user_id=None)) == "session:s1"


def test_dataset_group_name_from_arn() -> None:
    assert dataset_group_name("arn:aws:personalize:us-east-1:000000000000:dataset-group/shop") == "shop"
    # another account's group of the same name is kept apart in every topic, key and folder
    assert dataset_group_name("arn:aws:personalize:us-east-1:111111111111:dataset-group/shop") == \
        "111111111111.shop"
    with pytest.raises(InvalidEvent):
        dataset_group_name("arn:aws:personalize:us-east-1:0:campaign/shop")


def test_record_round_trips_and_matches_the_published_json_schema() -> None:
    e = event(properties={"n": 1}, impression=["a", "b"], event_value=3.0)
    raw = encode_event(e)
    jsonschema.validate(json.loads(raw), SCHEMA)
    assert decode_event(raw) == e


def test_unknown_record_version_is_refused() -> None:
    raw = json.loads(encode_event(event()))
    raw["v"] = 2
    with pytest.raises(UnknownVersion, match="version 2"):
        decode_event(json.dumps(raw))


def test_published_schema_is_the_models_schema() -> None:
    """The JSON Schema in the repo cannot drift from the model that writes the records."""
    generated = Event.model_json_schema(mode="serialization")
    assert SCHEMA["properties"] == generated["properties"]
    assert SCHEMA["required"] == generated["required"]


def test_events_topic_pattern_selects_dataset_groups() -> None:
    import re
    everything, some = events_topic_pattern(), events_topic_pattern("shop|news-.*")
    assert re.match(everything, "opz.any.events") and not re.match(everything, "opz.any.items")
    assert re.match(some, "opz.shop.events") and re.match(some, "opz.news-eu.events")
    assert not re.match(some, "opz.shopx.events") and not re.match(some, "x-opz.shop.events")
