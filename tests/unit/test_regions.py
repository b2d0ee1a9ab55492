"""Regions, and the smaller control-plane rules Personalize has: what a caller's region names
and finds, event tracker ARNs, ListRecipes' domain and GetSolutionMetrics' names (the
control plane's handlers on a store of their own, as a request from each region sees them)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from kernel.settings import Settings
from serving import accounts
from serving.control.base import Ctx
from serving.control.dispatch import dispatch
from serving.control.sqlite_store import ResourceStore
from serving.errors import ResourceAlreadyExistsException, ResourceNotFoundException

ACCOUNT = "000000000000"
SINGAPORE = "ap-southeast-1"


def test_an_arn_is_seen_only_from_its_account_and_region() -> None:
    arn = f"arn:aws:personalize:{SINGAPORE}:{ACCOUNT}:dataset-group/shop"
    assert accounts.region_of(arn) == SINGAPORE and accounts.region_of("not-an-arn") == ""
    assert accounts.visible(arn, ACCOUNT, SINGAPORE)
    assert not accounts.visible(arn, ACCOUNT, "us-east-1")
    assert not accounts.visible(arn, "111111111111", SINGAPORE)


def test_a_request_with_no_signing_scope_is_in_the_servers_region() -> None:
    assert accounts.caller_region("eu-west-1") == "eu-west-1" and accounts.signed_region() is None
    token = accounts.serve_as("111111111111", SINGAPORE)
    try:
        assert accounts.caller("x") == "111111111111" and accounts.caller_region("eu-west-1") == SINGAPORE
    finally:
        accounts.done(token)
    token = accounts.serve_as("111111111111")
    try:
        assert accounts.caller_region("eu-west-1") == "eu-west-1" and accounts.signed_region() is None
    finally:
        accounts.done(token)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Ctx]:
    resources = ResourceStore(tmp_path / "control.db")
    yield Ctx(settings=Settings(data_dir=tmp_path / "data"), resources=resources,
              datasets=None)  # type: ignore[arg-type] - no handler here touches dataset files
    resources.close()


@contextmanager
def signed_for(region: str | None) -> Iterator[None]:
    token = accounts.serve_as(ACCOUNT, region)
    try:
        yield
    finally:
        accounts.done(token)


def call(ctx: Ctx, op: str, region: str | None = None, **body: Any) -> dict[str, Any]:
    with signed_for(region):
        answer = dispatch(f"AmazonPersonalize.{op}", orjson.dumps(body), ctx)
        return asyncio.run(answer) if asyncio.iscoroutine(answer) else answer  # type: ignore[return-value]


def test_what_a_client_creates_is_named_in_its_region_and_found_only_there(ctx: Ctx) -> None:
    group = call(ctx, "CreateDatasetGroup", SINGAPORE, name="shop")["datasetGroupArn"]
    assert group == f"arn:aws:personalize:{SINGAPORE}:{ACCOUNT}:dataset-group/shop"
    described = call(ctx, "DescribeDatasetGroup", SINGAPORE, datasetGroupArn=group)["datasetGroup"]
    assert described["name"] == "shop"
    listed = call(ctx, "ListDatasetGroups", SINGAPORE)["datasetGroups"]
    assert [g["datasetGroupArn"] for g in listed] == [group]

    for region in ("us-east-1", None):  # another region, or unsigned: the server's (us-east-1)
        assert call(ctx, "ListDatasetGroups", region)["datasetGroups"] == []
        with pytest.raises(ResourceNotFoundException):
            call(ctx, "DescribeDatasetGroup", region, datasetGroupArn=group)
        with pytest.raises(ResourceNotFoundException):
            call(ctx, "ListEventTrackers", region, datasetGroupArn=group)
        with pytest.raises(ResourceNotFoundException):
            call(ctx, "CreateEventTracker", region, name="web", datasetGroupArn=group)
    assert call(ctx, "CreateDatasetGroup", None, name="other")["datasetGroupArn"].startswith(
        f"arn:aws:personalize:us-east-1:{ACCOUNT}:")


def test_a_dataset_group_name_is_one_per_account_across_regions(ctx: Ctx) -> None:
    """Its data is kept by account and name: a namesake in another region would share it."""
    group = call(ctx, "CreateDatasetGroup", SINGAPORE, name="shop")["datasetGroupArn"]
    with pytest.raises(ResourceAlreadyExistsException, match=f"exists in region {SINGAPORE} already"):
        call(ctx, "CreateDatasetGroup", "eu-west-1", name="shop")
    with pytest.raises(ResourceAlreadyExistsException, match="already exists"):
        call(ctx, "CreateDatasetGroup", SINGAPORE, name="shop")
    assert ctx.resources.elsewhere("dataset-group", "shop", group) is None
    assert ctx.resources.elsewhere("dataset-group", "shop", group.replace(SINGAPORE, "eu-west-1")) == group
    other_account = group.replace(ACCOUNT, "111111111111").replace(SINGAPORE, "eu-west-1")
    assert ctx.resources.elsewhere("dataset-group", "shop", other_account) is None


def test_event_trackers_are_named_by_an_id_so_names_repeat_across_groups(ctx: Ctx) -> None:
    """Personalize's tracker ARNs end in a generated id (event-tracker/d2e0162e), not the name."""
    arns = []
    for name in ("shop", "blog"):
        group = call(ctx, "CreateDatasetGroup", name=name)["datasetGroupArn"]
        arns.append(call(ctx, "CreateEventTracker", name="web", datasetGroupArn=group)["eventTrackerArn"])
        with pytest.raises(ResourceAlreadyExistsException, match="already has an event tracker"):
            call(ctx, "CreateEventTracker", name="other", datasetGroupArn=group)
    assert arns[0] != arns[1]
    for arn in arns:
        assert arn.startswith(f"arn:aws:personalize:us-east-1:{ACCOUNT}:event-tracker/")
        tracker_id = arn.rsplit("/", 1)[1]
        assert len(tracker_id) == 8 and int(tracker_id, 16) >= 0
        assert call(ctx, "DescribeEventTracker", eventTrackerArn=arn)["eventTracker"]["name"] == "web"


def test_list_recipes_by_domain_lists_only_that_domains_recipes(ctx: Ctx) -> None:
    everything = call(ctx, "ListRecipes")["recipes"]
    custom = [r["name"] for r in everything if "domain" not in r]
    assert "aws-hrnn" in custom and "aws-trending-now" in custom
    for domain, prefix in (("ECOMMERCE", "aws-ecomm-"), ("VIDEO_ON_DEMAND", "aws-vod-")):
        use_cases = call(ctx, "ListRecipes", domain=domain)["recipes"]
        assert len(use_cases) == 5
        assert all(r["domain"] == domain and r["name"].startswith(prefix) for r in use_cases)


def test_get_solution_metrics_answers_with_personalizes_names_only(ctx: Ctx) -> None:
    group = call(ctx, "CreateDatasetGroup", name="shop")["datasetGroupArn"]
    version = f"arn:aws:personalize:us-east-1:{ACCOUNT}:solution/s/v1"
    metrics = {"coverage": 0.5, "precision_at_10": 0.1, "hit_rate_at_10": 0.4, "coverage_at_10": 0.3}
    ctx.resources.create("solution-version", version, "v1", {
        "solutionVersionArn": version, "status": "ACTIVE", "datasetGroupArn": group, "metrics": metrics})
    assert call(ctx, "GetSolutionMetrics", solutionVersionArn=version)["metrics"] == {
        "coverage": 0.5, "precision_at_10": 0.1}
    described = call(ctx, "DescribeSolutionVersion", solutionVersionArn=version)["solutionVersion"]
    assert described["metrics"] == metrics  # the report reads them all from here
