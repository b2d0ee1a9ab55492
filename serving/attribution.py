"""Metric attribution's rules: what a metric's expression means, which campaign an event is
attributed to, what the event adds to the metric, and the 15-minute totals of a report.

A recommendationId names the campaign that answered without any store: it carries a short
code of the campaign's ARN (`RID-<code>-<random>`, 40 characters, Personalize's limit), so an
event is attributed the moment it arrives, and as well a year later from the archive. Pure
logic: the control plane, PutEvents and the report call it with what they read.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kernel.dataset_schema import Schema

UNDEFINED_SOURCE = "SOURCE_NAME_UNDEFINED"  # Personalize's name for events without a source
OTHER_SOURCES = "OTHER_SOURCES"  # where events of sources past MAX_SOURCES are counted
MAX_SOURCES = 100  # Personalize reports at most 100 event attribution sources
MAX_METRICS = 10
WINDOW_S = 900  # Personalize aggregates over 15-minute windows
REPORT_COLUMNS = ("METRIC_NAME", "EVENT_TYPE", "VALUE", "MATH_FUNCTION", "EVENT_ATTRIBUTION_SOURCE",
                  "TIMESTAMP")
_CODE_CHARS = 8
_RID = re.compile(r"^RID-([0-9a-f]{8})-[0-9a-f]{27}$")
_EXPRESSION = re.compile(r"^\s*(?:(?P<count>SAMPLECOUNT)\s*\(\s*\)|SUM\s*\(\s*(?P<dataset>\w+)\s*\.\s*"
                         r"(?P<column>[A-Za-z_][A-Za-z0-9_]*)\s*\))\s*$", re.IGNORECASE)
_DATASETS = {"interactions": "INTERACTIONS", "items": "ITEMS"}
_NUMERIC = frozenset({"int", "long", "float", "double"})


@dataclass(frozen=True)
class Metric:
    """One metric of an attribution: the events of `event_type`, counted or summed over a
    numeric column of theirs (INTERACTIONS) or of their item (ITEMS)."""
    name: str
    event_type: str
    expression: str
    dataset: str | None = None  # None: SAMPLECOUNT()
    column: str | None = None

    @property
    def math_function(self) -> str:
        return "samplecount" if self.dataset is None else "sum"

    @property
    def wire(self) -> dict[str, str]:
        return {"eventType": self.event_type, "metricName": self.name, "expression": self.expression}


def parse_metric(name: str, event_type: str, expression: str) -> Metric:
    """`SAMPLECOUNT()` or `SUM(Interactions.COLUMN)` / `SUM(Items.COLUMN)`; ValueError otherwise."""
    m = _EXPRESSION.match(expression)
    if m is None:
        raise ValueError(f"metric {name}: the expression must be SAMPLECOUNT() or SUM(<Interactions|Items>"
                         ".<COLUMN>)")
    if m["count"]:
        return Metric(name, event_type, expression)
    dataset = _DATASETS.get(m["dataset"].lower())
    if dataset is None:
        raise ValueError(f"metric {name}: SUM() takes a column of Interactions or Items, not of "
                         f"{m['dataset'][:40]}")
    return Metric(name, event_type, expression, dataset, m["column"].upper())


def metrics_of(stored: list[dict[str, str]]) -> list[Metric]:
    """Metrics as the API and the control store have them (eventType, metricName, expression)."""
    return [parse_metric(m["metricName"], m["eventType"], m["expression"]) for m in stored]


def check_metrics(metrics: list[Metric], schemas: Mapping[str, Schema]) -> None:
    """What CreateMetricAttribution refuses: more than MAX_METRICS, a name used twice, and a SUM
    over a column that the group's dataset (`schemas` by dataset type) lacks or that is not a
    number."""
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"a metric attribution has at most {MAX_METRICS} metrics, not {len(metrics)}")
    names = [m.name for m in metrics]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"metric name {twice[0]} is given twice")
    for m in metrics:
        if m.dataset is None:
            continue
        schema = schemas.get(m.dataset)
        if schema is None:
            raise ValueError(f"metric {m.name}: the dataset group has no {m.dataset} dataset to sum over")
        column = schema.column(m.column or "")
        if column is None:
            raise ValueError(f"metric {m.name}: the {m.dataset} dataset has no column {m.column}")
        if column.type not in _NUMERIC:
            raise ValueError(f"metric {m.name}: column {m.column} is a {column.type}; SUM() needs a number")


def campaign_code(campaign_arn: str) -> str:
    return hashlib.sha256(campaign_arn.encode()).hexdigest()[:_CODE_CHARS]


def recommendation_id(campaign_arn: str) -> str:
    """A new recommendationId of an answer by `campaign_arn`: 4 + 8 + 1 + 27 = 40 characters."""
    return f"RID-{campaign_code(campaign_arn)}-{secrets.token_hex(14)[:27]}"


def source(given: str | None, rid: str | None, campaigns: Mapping[str, str]) -> str:
    """Whom an event is attributed to: its eventAttributionSource if it has one (Personalize
    prefers it to the recommendationId), else the campaign (of `campaigns`, code -> ARN) whose
    answer the recommendationId names, else SOURCE_NAME_UNDEFINED."""
    if given:
        return given
    m = _RID.match(rid or "")
    return campaigns.get(m[1], UNDEFINED_SOURCE) if m else UNDEFINED_SOURCE


def codes(campaign_arns: Iterable[str]) -> dict[str, str]:
    """code -> campaign ARN, what `source` looks recommendationIds up in."""
    return {campaign_code(arn): arn for arn in campaign_arns}


def property_value(properties: Mapping[str, Any] | None, column: str) -> Any:
    """An event's value of an INTERACTIONS metadata column, from its `properties` (whose keys
    are the columns' camelCase names, matched ignoring case and underscores)."""
    want = column.replace("_", "").lower()
    return next((v for k, v in (properties or {}).items() if k.replace("_", "").lower() == want), None)


def amount(metric: Metric, event_value: float | None, properties: Mapping[str, Any] | None,
           item: Mapping[str, Any] | None) -> float | None:
    """What one event of the metric's type adds: 1 for SAMPLECOUNT(); the column's value for a
    SUM, None when the event (or its item) has none."""
    if metric.dataset is None:
        return 1.0
    if metric.dataset == "ITEMS":
        value = (item or {}).get(metric.column or "")
    elif metric.column == "EVENT_VALUE":
        value = event_value
    else:
        value = property_value(properties, metric.column or "")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class Sources:
    """The distinct sources an attribution reports, at most MAX_SOURCES; the events of any
    further one are reported as OTHER_SOURCES (a client cannot grow a report without bound)."""

    def __init__(self, limit: int = MAX_SOURCES) -> None:
        self.limit = limit
        self.seen: set[str] = set()

    def __call__(self, name: str) -> str:
        if name in self.seen:
            return name
        if len(self.seen) >= self.limit:
            return OTHER_SOURCES
        self.seen.add(name)
        return name


@dataclass(frozen=True)
class Attributed:
    """One event as the report sees it."""
    event_type: str
    at: float  # Unix seconds
    source: str
    event_value: float | None = None
    properties: Mapping[str, Any] | None = None
    item: Mapping[str, Any] | None = None  # the item's ITEMS row
    user: str | None = None  # the user, or the session of an anonymous one


def totals(metrics: list[Metric], events: Iterable[Attributed]) -> list[dict[str, Any]]:
    """Each metric's count or sum per source over all `events`, biggest first."""
    sums: dict[tuple[str, str], float] = {}
    for row in windows(metrics, events):
        key = (row["METRIC_NAME"], row["EVENT_ATTRIBUTION_SOURCE"])
        sums[key] = sums.get(key, 0.0) + row["VALUE"]
    return [{"metricName": name, "source": src, "value": value}
            for (name, src), value in sorted(sums.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))]


def windows(metrics: list[Metric], events: Iterable[Attributed], window_s: int = WINDOW_S
            ) -> list[dict[str, Any]]:
    """The report's rows (REPORT_COLUMNS): per metric, source and `window_s` window that had an
    event of the metric's type, the count or sum; TIMESTAMP is the window's start."""
    totals: dict[tuple[str, str, int], float] = {}
    sources = Sources()
    for e in events:
        for m in metrics:
            if e.event_type != m.event_type:
                continue
            add = amount(m, e.event_value, e.properties, e.item)
            if add is None:
                continue
            key = (m.name, sources(e.source), int(e.at // window_s * window_s))
            totals[key] = totals.get(key, 0.0) + add
    by_name = {m.name: m for m in metrics}
    return [{"METRIC_NAME": name, "EVENT_TYPE": by_name[name].event_type, "VALUE": value,
             "MATH_FUNCTION": by_name[name].math_function, "EVENT_ATTRIBUTION_SOURCE": src, "TIMESTAMP": at}
            for (name, src, at), value in sorted(totals.items(), key=lambda kv: (kv[0][2], *kv[0][:2]))]
