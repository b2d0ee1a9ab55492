"""Metric attributions on the control plane (CreateMetricAttribution & co.): which metrics of a
dataset group's events are attributed to the campaigns that led to them.

One per dataset group, as Personalize has it. Its metrics are checked against the group's
datasets' schemas when they are given (a SUM over a column the dataset lacks, or that is not a
number, is refused then, not when events arrive). PutEvents counts them
(serving.attributed_events); an import job with publishAttributionMetricsToS3 writes them to
metricsOutputConfig's path.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from kernel.dataset_schema import Schema, parse_schema
from serving.attribution import check_metrics, metrics_of
from serving.control.base import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Page,
    Req,
    location_allowed,
    operation,
    paginate,
    register,
)
from serving.control.datasets import S3DataConfig
from serving.control.groups import GROUPS
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceAlreadyExistsException
from serving.jobs import ACTIVE
from serving.wire import Arn

Text256 = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class MetricAttribute(Req):
    eventType: Text256
    metricName: Text256
    expression: Text256


class MetricsOutputConfig(Req):
    s3DataDestination: S3DataConfig | None = None
    roleArn: Text256


Metrics = Annotated[list[MetricAttribute], Field(max_length=10)]


class CreateMetricAttribution(Req):
    name: Name
    datasetGroupArn: Arn
    metrics: Metrics
    metricsOutputConfig: MetricsOutputConfig


class MetricAttributionArn(Req):
    metricAttributionArn: Arn


class UpdateMetricAttribution(Req):
    metricAttributionArn: Arn
    addMetrics: Metrics | None = None
    removeMetrics: Annotated[list[Text256], Field(max_length=10)] | None = None
    metricsOutputConfig: MetricsOutputConfig | None = None


class ListMetricAttributionMetrics(Page):
    metricAttributionArn: Arn


def _described(body: Body) -> Body:
    """A metric attribution as Describe and List show it: its metrics have their own List."""
    return {k: v for k, v in body.items() if k != "metrics"}


ATTRIBUTIONS = register(Family("metric-attribution", MetricAttributionArn, ListByDatasetGroup, (
    "name", "metricAttributionArn", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason"),
    parent="datasetGroupArn", view=_described, takes_tags=False), delete=True)


def group_schemas(ctx: Ctx, group_arn: str) -> dict[str, Schema]:
    """The schemas of the group's datasets, by dataset type."""
    out = {}
    for dataset in ctx.resources.list("dataset", group_arn):
        schema = ctx.resources.get(dataset["schemaArn"], "schema")
        if schema is not None:
            out[dataset["datasetType"]] = parse_schema(schema["schema"])
    return out


def _checked(ctx: Ctx, group_arn: str, given: list[Body]) -> list[Body]:
    try:
        metrics = metrics_of(given)
        check_metrics(metrics, group_schemas(ctx, group_arn))
    except ValueError as exc:
        raise InvalidInputException(f"metrics: {exc}") from None
    return [m.wire for m in metrics]


def _output(ctx: Ctx, config: MetricsOutputConfig) -> Body:
    if config.s3DataDestination is not None:
        location_allowed(ctx, "metricsOutputConfig.s3DataDestination.path", config.s3DataDestination.path)
    return config.model_dump(exclude_none=True)


@operation("CreateMetricAttribution", CreateMetricAttribution)
def create_metric_attribution(req: CreateMetricAttribution, ctx: Ctx) -> Body:
    GROUPS.get(ctx, req.datasetGroupArn)
    ATTRIBUTIONS.within_quota(ctx)
    ATTRIBUTIONS.only_one(ctx, req.datasetGroupArn)
    arn = ctx.arn(ATTRIBUTIONS.kind, req.name)
    body = {"name": req.name, "metricAttributionArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "metricsOutputConfig": _output(ctx, req.metricsOutputConfig),
            "metrics": _checked(ctx, req.datasetGroupArn, [m.model_dump() for m in req.metrics]),
            "status": ACTIVE}
    ATTRIBUTIONS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn)
    return {"metricAttributionArn": arn}


@operation("UpdateMetricAttribution", UpdateMetricAttribution)
def update_metric_attribution(req: UpdateMetricAttribution, ctx: Ctx) -> Body:
    """Removes first, then adds: a metric can be redefined in one call."""
    body = ATTRIBUTIONS.get(ctx, req.metricAttributionArn)
    metrics = list(body["metrics"])
    names = {m["metricName"] for m in metrics}
    if missing := [n for n in req.removeMetrics or () if n not in names]:
        raise InvalidInputException(f"removeMetrics: the metric attribution has no metric {missing[0]}")
    metrics = [m for m in metrics if m["metricName"] not in set(req.removeMetrics or ())]
    kept = {m["metricName"] for m in metrics}
    if clash := [m.metricName for m in req.addMetrics or () if m.metricName in kept]:
        raise ResourceAlreadyExistsException(f"addMetrics: the metric attribution has a metric {clash[0]} "
                                             "already; remove it in the same call to redefine it")
    changes: Body = {"status": ACTIVE}
    if req.addMetrics is not None or req.removeMetrics is not None:
        changes["metrics"] = _checked(ctx, body["datasetGroupArn"],
                                      metrics + [m.model_dump() for m in req.addMetrics or ()])
    if req.metricsOutputConfig is not None:
        changes["metricsOutputConfig"] = _output(ctx, req.metricsOutputConfig)
    ctx.resources.update(req.metricAttributionArn, changes)
    return {"metricAttributionArn": req.metricAttributionArn}


@operation("ListMetricAttributionMetrics", ListMetricAttributionMetrics)
def list_metrics(req: ListMetricAttributionMetrics, ctx: Ctx) -> Body:
    body = ATTRIBUTIONS.get(ctx, req.metricAttributionArn)
    return paginate(body["metrics"], req, "metrics", ("eventType", "metricName", "expression"))
