"""Metric attribution's rules: expressions, the source an event is attributed to, what it adds,
and the report's 15-minute rows."""
from __future__ import annotations

import json

import pytest

from kernel.dataset_schema import Schema, parse_schema
from serving.attribution import (
    MAX_METRICS,
    OTHER_SOURCES,
    UNDEFINED_SOURCE,
    Attributed,
    Metric,
    Sources,
    amount,
    campaign_code,
    check_metrics,
    codes,
    parse_metric,
    recommendation_id,
    source,
    windows,
)

CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/home"
OTHER = "arn:aws:personalize:us-east-1:000000000000:campaign/home-b"


def schema(name: str, *fields: tuple[str, object] | dict[str, object]) -> Schema:
    return parse_schema(json.dumps({"type": "record", "name": name, "fields": [
        f if isinstance(f, dict) else {"name": f[0], "type": f[1]} for f in fields]}))


INTERACTIONS = schema("Interactions", ("USER_ID", "string"), ("ITEM_ID", "string"), ("TIMESTAMP", "long"),
                      ("EVENT_TYPE", "string"), ("EVENT_VALUE", ["null", "float"]),
                      ("MINUTES_WATCHED", ["null", "int"]))
ITEMS = schema("Items", ("ITEM_ID", "string"), ("PRICE", "double"),
               {"name": "GENRES", "type": "string", "categorical": True})


def test_expressions_are_samplecount_or_a_sum_over_interactions_or_items() -> None:
    assert parse_metric("clicks", "click", "SAMPLECOUNT()") == Metric("clicks", "click", "SAMPLECOUNT()")
    revenue = parse_metric("revenue", "purchase", "SUM(Items.PRICE)")
    assert (revenue.dataset, revenue.column, revenue.math_function) == ("ITEMS", "PRICE", "sum")
    watched = parse_metric("watched", "watch", " sum( interactions . Minutes_Watched ) ")
    assert (watched.dataset, watched.column) == ("INTERACTIONS", "MINUTES_WATCHED")
    for bad in ("COUNT()", "SUM(Users.AGE)", "SUM(PRICE)", "SAMPLECOUNT(Items.PRICE)",
                "SUM(Items.PRICE) + 1"):
        with pytest.raises(ValueError):
            parse_metric("m", "click", bad)


def test_a_sum_needs_a_numeric_column_the_groups_dataset_has() -> None:
    schemas = {"INTERACTIONS": INTERACTIONS, "ITEMS": ITEMS}
    check_metrics([parse_metric("a", "click", "SAMPLECOUNT()"), parse_metric("b", "buy", "SUM(Items.PRICE)"),
                   parse_metric("c", "watch", "SUM(Interactions.MINUTES_WATCHED)")], schemas)
    for metrics, why in (
            ([parse_metric("b", "buy", "SUM(Items.PRICE)")], "no ITEMS dataset"),
            ([parse_metric("b", "buy", "SUM(Items.COST)")], "no column COST"),
            ([parse_metric("b", "buy", "SUM(Items.GENRES)")], "needs a number"),
            ([parse_metric("a", "click", "SAMPLECOUNT()")] * 2, "given twice"),
            ([parse_metric(f"m{i}", "click", "SAMPLECOUNT()") for i in range(MAX_METRICS + 1)], "at most")):
        with pytest.raises(ValueError, match=why):
            check_metrics(metrics, schemas if why != "no ITEMS dataset" else {"INTERACTIONS": INTERACTIONS})


def test_a_recommendation_id_names_its_campaign_within_personalizes_40_characters() -> None:
    rid = recommendation_id(CAMPAIGN)
    assert len(rid) == 40 and rid.startswith("RID-") and rid != recommendation_id(CAMPAIGN)
    campaigns = codes([CAMPAIGN, OTHER])
    assert source(None, rid, campaigns) == CAMPAIGN
    assert source(None, recommendation_id(OTHER), campaigns) == OTHER
    assert campaign_code(CAMPAIGN) != campaign_code(OTHER)


def test_the_source_is_the_given_one_then_the_recommendations_campaign_then_undefined() -> None:
    campaigns = codes([CAMPAIGN])
    rid = recommendation_id(CAMPAIGN)
    assert source("newsletter", rid, campaigns) == "newsletter"  # Personalize prefers the given source
    assert source(None, rid, codes([OTHER])) == UNDEFINED_SOURCE  # a campaign deleted since
    assert source(None, "RID-0f8fad5b-d9cb-469f-a165-70867728950e", campaigns) == UNDEFINED_SOURCE
    assert source(None, None, campaigns) == UNDEFINED_SOURCE


def test_what_an_event_adds() -> None:
    clicks = parse_metric("clicks", "click", "SAMPLECOUNT()")
    value = parse_metric("value", "click", "SUM(Interactions.EVENT_VALUE)")
    watched = parse_metric("watched", "watch", "SUM(Interactions.MINUTES_WATCHED)")
    revenue = parse_metric("revenue", "buy", "SUM(Items.PRICE)")
    assert amount(clicks, None, None, None) == 1.0
    assert amount(value, 2.5, None, None) == 2.5 and amount(value, None, None, None) is None
    assert amount(watched, None, {"minutesWatched": 42}, None) == 42.0
    assert amount(watched, None, {"minutesWatched": "lots"}, None) is None
    assert amount(revenue, None, None, {"PRICE": 9.99}) == 9.99 and amount(revenue, None, None, None) is None


def test_sources_past_the_limit_are_counted_together() -> None:
    sources = Sources(limit=2)
    assert [sources(s) for s in ("a", "b", "c", "a", "d")] == ["a", "b", OTHER_SOURCES, "a", OTHER_SOURCES]


def test_the_report_has_a_row_per_metric_source_and_fifteen_minutes() -> None:
    metrics = [parse_metric("clicks", "click", "SAMPLECOUNT()"),
               parse_metric("revenue", "buy", "SUM(Items.PRICE)")]
    events = [Attributed("click", 900.0, CAMPAIGN), Attributed("click", 1799.0, CAMPAIGN),
              Attributed("click", 1800.0, CAMPAIGN), Attributed("click", 1000.0, UNDEFINED_SOURCE),
              Attributed("buy", 1000.0, OTHER, item={"PRICE": 3.0}),
              Attributed("buy", 1001.0, OTHER, item={"PRICE": 4.5}),
              Attributed("buy", 1002.0, OTHER, item=None),  # an item without a price adds nothing
              Attributed("view", 1000.0, CAMPAIGN)]
    assert windows(metrics, events) == [
        {"METRIC_NAME": "clicks", "EVENT_TYPE": "click", "VALUE": 1.0, "MATH_FUNCTION": "samplecount",
         "EVENT_ATTRIBUTION_SOURCE": UNDEFINED_SOURCE, "TIMESTAMP": 900},
        {"METRIC_NAME": "clicks", "EVENT_TYPE": "click", "VALUE": 2.0, "MATH_FUNCTION": "samplecount",
         "EVENT_ATTRIBUTION_SOURCE": CAMPAIGN, "TIMESTAMP": 900},
        {"METRIC_NAME": "revenue", "EVENT_TYPE": "buy", "VALUE": 7.5, "MATH_FUNCTION": "sum",
         "EVENT_ATTRIBUTION_SOURCE": OTHER, "TIMESTAMP": 900},
        {"METRIC_NAME": "clicks", "EVENT_TYPE": "click", "VALUE": 1.0, "MATH_FUNCTION": "samplecount",
         "EVENT_ATTRIBUTION_SOURCE": CAMPAIGN, "TIMESTAMP": 1800}]
