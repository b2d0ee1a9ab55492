"""The botocore service-model check (serving/service_model.py): what Personalize refuses, we refuse."""
from __future__ import annotations

import random
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from model_requests import Requests

from serving import coverage
from serving.service_model import EXTENSIONS, SERVICES, Refused, check, checker, java_regex, service_model
from serving.wire import GetRecommendations

ARN = "arn:aws:personalize:us-east-1:000000000000:campaign/shop"
JOB = {"jobName": "j", "datasetArn": "arn:aws:personalize:us-east-1:000000000000:dataset/g/ITEMS"}
EXPORT = {**JOB, "roleArn": "arn:aws:iam::000000000000:role/personalize"}
EVENT = {"eventType": "click", "sentAt": 1_700_000_000}
IMPLEMENTED = sorted((s, op) for s, ops in coverage.implemented().items() for op in ops)


def refused(service: str, operation: str, payload: Any) -> Refused:
    with pytest.raises(Refused) as exc:
        check(service, operation, payload)
    return exc.value


def events(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"trackingId": "t", "sessionId": "s", "eventList": list(entries)}


@pytest.mark.parametrize(("service", "operation"), IMPLEMENTED)
def test_every_rule_of_every_implemented_operation_is_enforced(service: str, operation: str) -> None:
    """model_requests breaks each rule of the request once, from botocore's model read on its own:
    each is refused naming that member, with the error of its kind; its valid requests pass."""
    requests = Requests(service, random.Random(operation))
    for brk in requests.breaks(operation):
        exc = refused(service, operation, requests.broken(operation, brk))
        assert (exc.member, exc.wrong_type) == (brk.member, brk.wrong_type), (brk.rule, exc.message)
    for _ in range(25):
        check(service, operation, requests.request(operation))


def test_the_breaks_cover_every_kind_of_rule() -> None:
    rules = {b.rule for service, op in IMPLEMENTED for b in Requests(service, random.Random(0)).breaks(op)}
    assert rules == {"type", "max", "min", "count", "enum", "pattern", "range", "required", "null"}


@pytest.mark.parametrize(("service", "operation", "payload", "type_name", "message"), [
    # the probes of issue 15, each once accepted
    ("personalize-runtime", "GetRecommendations",
     {"campaignArn": ARN, "filterValues": {f"K{i}": "v" for i in range(100_000)}},
     "InvalidInputException", "filterValues: must have at most 25 entries, not 100000"),
    ("personalize-runtime", "GetRecommendations", {"campaignArn": ARN, "numResults": "5"},
     "SerializationException", "numResults: must be an integer, not a string"),
    ("personalize", "CreateCampaign", {"name": "c", "solutionVersionArn": ARN, "minProvisionedTPS": 2 ** 63},
     "InvalidInputException", "minProvisionedTPS: must be between 1 and 2147483647"),
    ("personalize", "CreateDatasetGroup", {"name": "g", "roleArn": "any string"},
     "InvalidInputException", r"roleArn: must match the pattern arn:([a-z\d-]+):iam::\d{12}:role/"),
    # JSON types are exact: no bool for an integer, no 5.0, no NaN
    ("personalize-runtime", "GetRecommendations", {"numResults": True},
     "SerializationException", "numResults: must be an integer, not a boolean"),
    ("personalize-runtime", "GetRecommendations", {"numResults": 5.0},
     "SerializationException", "numResults: must be an integer, not a number"),
    ("personalize-events", "PutEvents", events({**EVENT, "eventValue": float("nan")}),
     "SerializationException", "eventList[0].eventValue: must be a finite number"),
    ("personalize-events", "PutEvents", events({**EVENT, "sentAt": True}),
     "SerializationException", "eventList[0].sentAt: must be a number of seconds since the epoch"),
    # paths through lists, maps and nested structures
    ("personalize-events", "PutEvents", events(EVENT, EVENT, EVENT, {**EVENT, "itemId": "i" * 257}),
     "InvalidInputException", "eventList[3].itemId: must be at most 256 characters long, not 257"),
    ("personalize", "CreateDatasetExportJob", {**EXPORT, "jobOutput": {}},
     "InvalidInputException", "jobOutput.s3DataDestination: is required"),
    ("personalize", "CreateCampaign",
     {"name": "c", "solutionVersionArn": ARN, "campaignConfig": {"rankingInfluence": {"POPULARITY": 1.5}}},
     "InvalidInputException", "campaignConfig.rankingInfluence[POPULARITY]: must be between 0 and 1"),
    ("personalize", "CreateDatasetGroup", {"name": "g", "domain": "RETAIL"},
     "InvalidInputException", "domain: must be one of ECOMMERCE, VIDEO_ON_DEMAND"),
    ("personalize", "CreateSolution", {"name": "s", "datasetGroupArn": ARN, "solutionConfig": {
        "autoTrainingConfig": {"schedulingExpression": "1d"}}},
     "InvalidInputException", "solutionConfig.autoTrainingConfig.schedulingExpression: must match the"),
    ("personalize", "ListDatasetGroups", {"nextToken": "caf\u00e9"},
     "InvalidInputException", r"nextToken: must match the pattern \p{ASCII}{0,1500}"),
    ("personalize", "CreateSolution", {"name": "s", "datasetGroupArn": ARN, "eventType": "click\x00"},
     "InvalidInputException", "eventType: must not contain the character U+0000"),
    ("personalize", "CreateDatasetGroup", [1], "SerializationException",
     "the request body: must be an object, not an array"),
])
def test_what_personalize_refuses(service: str, operation: str, payload: Any, type_name: str,
                                  message: str) -> None:
    exc = refused(service, operation, payload)
    assert exc.type_name == type_name and exc.message.startswith(message), exc.message


def test_null_is_an_absent_member_but_a_wrong_value_in_a_list_or_map() -> None:
    check("personalize-runtime", "GetRecommendations", {"campaignArn": ARN, "userId": None, "context": None})
    assert refused("personalize-events", "PutEvents", events({**EVENT, "eventType": None})).message == \
        "eventList[0].eventType: is required"
    assert refused("personalize-events", "PutEvents", events({**EVENT, "impression": [None]})).type_name == \
        "SerializationException"
    exc = refused("personalize-runtime", "GetRecommendations", {"context": {"DEVICE": None}})
    assert (exc.type_name, exc.member) == ("SerializationException", "context[DEVICE]")


def test_local_files_are_our_documented_extension_of_s3_locations() -> None:
    for location in ("s3://bucket/items.csv", "file:///srv/items.csv", "/srv/data/items.csv", "items.csv"):
        check("personalize", "CreateDatasetImportJob", {**JOB, "dataSource": {"dataLocation": location}})
        check("personalize", "CreateDatasetExportJob",
              {**EXPORT, "jobOutput": {"s3DataDestination": {"path": location}}})
    exc = refused("personalize", "CreateDatasetImportJob", {**JOB, "dataSource": {"dataLocation": "/" * 257}})
    assert exc.message.startswith("dataSource.dataLocation: must be at most 256 characters")  # the rest holds


def test_each_extension_names_a_member_whose_rule_botocore_has() -> None:
    for (service, structure, member), dropped in EXTENSIONS.items():
        shapes = service_model(service)["shapes"]
        target = shapes[shapes[structure]["members"][member]["shape"]]
        assert dropped <= target.keys(), (structure, member)


def test_timestamps_may_also_be_strings_for_the_model_to_parse() -> None:
    for sent_at in ("2024-05-01T12:00:00Z", "soon", datetime(2024, 5, 1, tzinfo=UTC), 1.7e9):
        check("personalize-events", "PutEvents", events({**EVENT, "sentAt": sent_at}))


def test_long_input_is_never_echoed() -> None:
    long = "Q" * 100_000
    for service, operation, payload in [  # a map key is part of the path: at most 32 characters of it
        ("personalize-runtime", "GetRecommendations", {"filterValues": {long: "v"}}),
        ("personalize-runtime", "GetRecommendations", {"filterValues": {"K": long}}),
        ("personalize-runtime", "GetRecommendations", {"campaignArn": long}),
        ("personalize", "CreateDatasetGroup", {"name": "g", "tags": [{"tagKey": "k", "tagValue": long}]}),
    ]:
        message = refused(service, operation, payload).message
        assert len(message) < 200 and "Q" * 33 not in message, message


def test_the_check_runs_inside_the_routes_models_and_is_no_value_error() -> None:
    """pydantic wraps a ValueError into its own error; Refused must reach the app's handlers as is."""
    assert not issubclass(Refused, ValueError)
    with pytest.raises(Refused, match="numResults: must be an integer"):
        GetRecommendations.model_validate_json(b'{"campaignArn": "' + ARN.encode() + b'", "numResults": "5"}')
    assert checker("personalize-runtime", "GetRecommendations") is checker("personalize-runtime",
                                                                           "GetRecommendations")


# ---- Java's patterns in Python -------------------------------------------------------------------

def test_patterns_match_whole_values_as_java_does() -> None:
    name = java_regex(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*")
    assert name.fullmatch("shop-2024_a") and not name.fullmatch("shop.2024") and not name.fullmatch("a b")
    role = java_regex(r"arn:([a-z\d-]+):iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
    assert role.fullmatch("arn:aws:iam::000000000000:role/personalize")
    assert not role.fullmatch("arn:aws:iam::\u0661\u0662\u0663456789012:role/x")  # \d: ASCII digits only
    arn = java_regex(r"arn:([a-z\d-]+):personalize:.*:.*:.+")
    assert arn.fullmatch(ARN) and not arn.fullmatch(ARN + "\r") and not arn.fullmatch("x" + ARN)  # '.'


def test_every_pattern_of_the_three_models_translates() -> None:
    patterns = {s["pattern"] for service in SERVICES for s in service_model(service)["shapes"].values()
                if "pattern" in s}
    assert patterns and all(java_regex(p) for p in patterns)
    with pytest.raises(ValueError, match="unsupported"):
        java_regex(r"\p{Lu}+")
    with pytest.raises(ValueError, match="unsupported"):
        java_regex(r"[\p{L}]+")


def test_the_tag_pattern_is_unicodes_letters_separators_and_numbers() -> None:
    tag = java_regex(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$")
    for cp in [*range(0x10000), *range(0x10000, sys.maxunicode + 1, 97)]:
        c = chr(cp)
        want = unicodedata.category(c)[0] in "LZN" or c in "_.:/=+-@"
        assert (tag.fullmatch(c) is not None) == want, hex(cp)
