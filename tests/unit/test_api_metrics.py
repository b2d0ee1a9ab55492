"""API metrics: operation labels (bounded), what a request and a stored batch count."""
from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kernel.contract import DatasetRecord, Event
from kernel.settings import Settings
from serving import events_api, runtime_api
from serving.app import create_app
from serving.metrics import REST_OPERATIONS, ApiMetrics, RequestMetrics, operation_name

KNOWN = {"CreateDatasetGroup", "DescribeCampaign"}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def event(i: int, received_at: float) -> Event:
    return Event(event_id=f"e{i}", dataset_group="g", tracking_id="t", user_id="u", session_id="s",
                 event_type="click", item_id=f"i{i}", sent_at=float(i), received_at=received_at)


@pytest.mark.parametrize(("method", "path", "target", "expected"), [
    ("POST", "/", "AmazonPersonalize.CreateDatasetGroup", "CreateDatasetGroup"),
    ("POST", "/", "AmazonPersonalize.CreateRecommender", "unknown"),  # real, not in KNOWN
    ("POST", "/", "AmazonPersonalize.arn:aws:personalize:x", "unknown"),  # never the raw value
    ("POST", "/", "Other.CreateDatasetGroup", "unknown"),
    ("POST", "/", None, "unknown"),
    ("POST", "/events", None, "PutEvents"),
    ("POST", "/items", None, "PutItems"),
    ("POST", "/users", None, "PutUsers"),
    ("POST", "/recommendations", None, "GetRecommendations"),
    ("POST", "/personalize-ranking", None, "GetPersonalizedRanking"),
    ("OPTIONS", "/events", None, "other"),  # CORS preflight
    ("GET", "/health", None, "health"),
    ("GET", "/metrics", None, "metrics"),
    ("GET", "/campaigns/arn:aws:personalize:us-east-1:0:campaign/c", None, "other"),
])
def test_operation_label(method: str, path: str, target: str | None, expected: str) -> None:
    assert operation_name(method, path, target, KNOWN) == expected


def test_every_rest_json_route_has_its_operation_label(tmp_path: Path) -> None:
    assert set(REST_OPERATIONS.values()) == events_api.OPERATIONS | runtime_api.OPERATIONS
    app = create_app(Settings(data_dir=tmp_path), datasets=None)  # type: ignore[arg-type]
    posts = {path for path, methods in app.openapi()["paths"].items() if "post" in methods}
    assert posts == {"/", *REST_OPERATIONS}


def test_stored_records_count_by_kind() -> None:
    metrics = ApiMetrics(CollectorRegistry())
    item = DatasetRecord(record_id="r", dataset_group="g", dataset_type="ITEMS", id="i", fields={},
                         received_at=0.0)
    metrics.stored([event(1, 0.0), event(2, 0.0), item])
    r = metrics.registry
    assert value(r, "opz_api_events_accepted_total") == 2
    assert value(r, "opz_api_records_accepted_total", dataset_type="ITEMS") == 1
    assert value(r, "opz_api_records_accepted_total", dataset_type="USERS") == 0


async def test_the_middleware_counts_the_status_sent_and_500_for_a_raise() -> None:
    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["path"] == "/items":
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def nothing(message: object) -> None:
        pass

    metrics = ApiMetrics(CollectorRegistry())
    middleware = RequestMetrics(app, metrics, KNOWN)
    scope = {"type": "http", "method": "POST", "headers": [(b"x-amz-target", b"AmazonPersonalize.X")]}
    await middleware({**scope, "path": "/events"}, None, nothing)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await middleware({**scope, "path": "/items"}, None, nothing)  # type: ignore[arg-type]
    r = metrics.registry
    assert value(r, "opz_api_requests_total", operation="PutEvents", status="404") == 1
    assert value(r, "opz_api_requests_total", operation="PutItems", status="500") == 1
    assert value(r, "opz_api_request_duration_seconds_count", operation="PutItems") == 1
