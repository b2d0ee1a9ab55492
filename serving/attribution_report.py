"""A metric attribution's report, read from what the server keeps: the events PutEvents
archived and the interactions imported in bulk, each attributed (serving.attribution) to the
campaign whose recommendationId it carries, to its own source, or to SOURCE_NAME_UNDEFINED.

`report` is what `personalize metric-attribution report` and the console show: each metric's
total per source and, for every campaign split A/B (serving.ab_split), each arm's metric per
user and the lift. `publish` writes Personalize's CSV of 15-minute windows
(AggregatedAttributionMetrics-<import mode>-<time>.csv) to metricsOutputConfig's path, which
an import job with publishAttributionMetricsToS3 does when it ends.
"""
from __future__ import annotations

import csv
import io
import os
import time
import uuid
from typing import Any

from kernel.archive_parts import archive_of
from kernel.contract import dataset_group_name
from kernel.datasets import DatasetStore
from kernel.locations import LocationRefused, S3Location, confined
from kernel.s3_files import S3Error, S3Files
from kernel.settings import Settings
from serving.ab_split import split_report
from serving.attribution import REPORT_COLUMNS, Attributed, codes, metrics_of, source, totals, windows
from serving.control.base import TAGS
from serving.control.store import Body, ControlStore
from serving.deployed import split_of


class Unpublished(ValueError):
    """Why the report could not be written, in words safe to show the caller."""


def _campaigns(resources: ControlStore, group_arn: str) -> list[Body]:
    return [c for c in resources.list("campaign") if c["datasetGroupArn"] == group_arn]


def item_values(store: DatasetStore, group: str, columns: set[str]) -> dict[str, dict[str, Any]]:
    """item id -> its values of `columns` (those SUM(Items.X) metrics read), from the ITEMS dataset."""
    table = store.read(group, "ITEMS") if columns else None
    if table is None or not table.num_rows:
        return {}
    have = [c for c in sorted(columns) if c in table.column_names]
    return {r.pop("ITEM_ID"): r for r in table.select(["ITEM_ID", *have]).to_pylist()}


def attributed_events(settings: Settings, resources: ControlStore, attribution: Body, *,
                      streamed: bool = True) -> list[Attributed]:
    """The group's events as the report sees them: the bulk imported interactions and, unless
    not `streamed`, the events PutEvents archived."""
    group_arn = attribution["datasetGroupArn"]
    group = dataset_group_name(group_arn)
    store = DatasetStore.of(settings)
    campaigns = codes(c["campaignArn"] for c in _campaigns(resources, group_arn))
    items = item_values(store, group, {m.column for m in metrics_of(attribution["metrics"])
                                  if m.dataset == "ITEMS" and m.column})
    bulk = store.read(group, "INTERACTIONS", "BULK")
    out = [Attributed(r.get("EVENT_TYPE") or "", float(r["TIMESTAMP"]),
                      source(r.get("EVENT_ATTRIBUTION_SOURCE"), r.get("RECOMMENDATION_ID"), campaigns),
                      r.get("EVENT_VALUE"), r, items.get(r["ITEM_ID"]), r["USER_ID"])
           for r in (bulk.to_pylist() if bulk.num_rows else ())]
    if streamed:
        out += [Attributed(e.event_type, e.sent_at,
                           source(e.attribution_source, e.recommendation_id, campaigns), e.event_value,
                           e.properties, items.get(e.item_id or ""), e.user_id or e.session_id)
                for e in archive_of(settings).read(group)]
    return out


def report(settings: Settings, resources: ControlStore, attribution: Body) -> dict[str, Any]:
    metrics = metrics_of(attribution["metrics"])
    events = attributed_events(settings, resources, attribution)
    splits = []
    for campaign in _campaigns(resources, attribution["datasetGroupArn"]):
        split = split_of({t["tagKey"]: t["tagValue"] for t in campaign.get(TAGS, ())})
        if split is not None:
            splits.append(split_report(metrics, events, campaign["campaignArn"], split.arm_b, split.share))
    return {"metricAttributionArn": attribution["metricAttributionArn"], "name": attribution["name"],
            "metrics": attribution["metrics"], "events": len(events), "totals": totals(metrics, events),
            "splits": splits}


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def publish(settings: Settings, resources: ControlStore, attribution: Body, import_mode: str) -> str | None:
    """Write the bulk data's 15-minute windows to the attribution's s3DataDestination, if it has
    one; returns the file's location. Raises Unpublished."""
    destination = attribution["metricsOutputConfig"].get("s3DataDestination", {}).get("path")
    if destination is None:
        return None
    name = f"AggregatedAttributionMetrics-{import_mode}-{int(time.time())}.csv"
    rows = windows(metrics_of(attribution["metrics"]),
                   attributed_events(settings, resources, attribution, streamed=False))
    try:
        where = settings.locations.check(destination)
    except LocationRefused as exc:
        raise Unpublished(f"metricsOutputConfig.s3DataDestination.path: {exc}") from None
    text = csv_text(rows)
    if isinstance(where, S3Location):
        spool = settings.data_dir / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        staged = spool / f"attribution-{uuid.uuid4().hex}.csv"
        staged.write_text(text)
        try:
            S3Files(settings.s3_endpoint_url).upload(staged, where.child(name))
        except S3Error as exc:
            raise Unpublished(f"metricsOutputConfig.s3DataDestination.path {exc}") from None
        finally:
            staged.unlink(missing_ok=True)
        return str(where.child(name))
    where.mkdir(parents=True, exist_ok=True)
    final = confined(where / name, settings.locations.roots)
    staged = final.with_name(f".{name}.partial")
    staged.write_text(text)
    os.replace(staged, final)
    return str(final)
