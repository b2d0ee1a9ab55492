"""Accepted events counted into their dataset group's metric attribution, per source:
`opz_api_attributed_metric{account, metric_attribution, metric, source}` on /metrics, what
Personalize publishes to CloudWatch for streamed events.

The source is the campaign whose answer the event's recommendationId names (by the campaign's
name: labels never hold an ARN), the event's eventAttributionSource, or SOURCE_NAME_UNDEFINED;
at most MAX_SOURCES distinct per attribution, so a client cannot add series without bound.
What each group's attribution, campaigns and items are is read at most every ttl_s, not per
call. Counting runs after the events are durable and never fails the call that sent them.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from kernel.contract import Event, dataset_group_name
from kernel.datasets import DatasetStore
from serving.accounts import account_of
from serving.attribution import Metric, Sources, amount, codes, metrics_of, source
from serving.attribution_report import item_values
from serving.control.store import ControlStore

log = logging.getLogger(__name__)


@dataclass
class GroupAttribution:
    """One dataset group's metric attribution as PutEvents counts it."""
    account: str
    name: str
    metrics: list[Metric]
    campaigns: dict[str, str]  # recommendationId code -> campaign name
    sources: Sources = field(default_factory=Sources)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # for SUM(Items.X)
    items_version: tuple[str, ...] = ()


class AttributedEvents:
    def __init__(self, resources: ControlStore, datasets: DatasetStore, registry: CollectorRegistry,
                 ttl_s: float = 5.0) -> None:
        self.resources, self.datasets, self.ttl_s = resources, datasets, ttl_s
        self.values = Gauge("opz_api_attributed_metric", "Metric attribution: since the process started, "
                            "the count (SAMPLECOUNT) or sum (SUM) of each metric over the events "
                            "PutEvents accepted, by the source they are attributed to",
                            ["account", "metric_attribution", "metric", "source"], registry=registry)
        self._read_at = -1e18
        self._groups: dict[str, GroupAttribution] = {}

    def _refresh(self) -> None:
        """Every group's attribution, its campaigns and (for SUM(Items.X)) its items, kept
        where they have not changed: the sources seen stay counted against the limit."""
        campaigns: dict[str, list[tuple[str, str]]] = {}
        for c in self.resources.list("campaign"):
            campaigns.setdefault(c["datasetGroupArn"], []).append((c["campaignArn"], c["name"]))
        groups: dict[str, GroupAttribution] = {}
        for body in self.resources.list("metric-attribution"):
            group = dataset_group_name(body["datasetGroupArn"])
            named = dict(campaigns.get(body["datasetGroupArn"], []))
            by_code = {code: named[arn] for code, arn in codes(named).items()}
            was = self._groups.get(group)
            now = GroupAttribution(account_of(body["metricAttributionArn"]), body["name"],
                                   metrics_of(body["metrics"]), by_code)
            if was is not None and was.name == now.name:
                now.sources, now.items, now.items_version = was.sources, was.items, was.items_version
            if any(m.dataset == "ITEMS" for m in now.metrics):
                self._read_items(group, now)
            groups[group] = now
        self._groups = groups

    def _read_items(self, group: str, attribution: GroupAttribution) -> None:
        version = tuple(p.name for p in self.datasets.manifest(group, "ITEMS").parts)
        if version == attribution.items_version:
            return
        attribution.items = item_values(self.datasets, group, {
            m.column for m in attribution.metrics if m.dataset == "ITEMS" and m.column})
        attribution.items_version = version

    def count(self, events: Sequence[Event]) -> None:
        now = time.monotonic()
        try:
            if now - self._read_at >= self.ttl_s:
                self._refresh()
                self._read_at = now
            for e in events:
                attribution = self._groups.get(e.dataset_group)
                if attribution is not None:
                    self._count(attribution, e)
        except Exception:  # noqa: BLE001 - the events are stored: a count must not fail their call
            log.exception("metric attribution: events not counted")

    def _count(self, attribution: GroupAttribution, e: Event) -> None:
        by = attribution.sources(source(e.attribution_source, e.recommendation_id, attribution.campaigns))
        item = attribution.items.get(e.item_id or "")
        for m in attribution.metrics:
            add = amount(m, e.event_value, e.properties, item) if m.event_type == e.event_type else None
            if add is not None:
                self.values.labels(attribution.account, attribution.name, m.name, by).inc(add)
