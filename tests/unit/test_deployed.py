"""serving.deployed: a campaign's deployment is read from the control store (cached), and the
HRNN version it serves is published when it changes, not per request."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from serving.deployed import Campaigns, Deployed, serving_version
from serving.errors import ResourceNotFoundException

HRNN = "arn:aws:personalize:::recipe/aws-hrnn"
SIMS = "arn:aws:personalize:::recipe/aws-sims"
GROUP = "arn:aws:personalize:us-east-1:000000000000:dataset-group/shop"
SOLUTION = "arn:aws:personalize:us-east-1:000000000000:solution/s"
CAMPAIGN = "arn:aws:personalize:us-east-1:000000000000:campaign/c"


def version(name: str, recipe: str = HRNN, status: str = "ACTIVE") -> dict[str, Any]:
    return {"solutionVersionArn": f"{SOLUTION}/{name}", "solutionArn": SOLUTION, "status": status,
            "recipeArn": recipe, "datasetGroupArn": GROUP, "artifact": f"artifacts/s/{name}",
            "creationDateTime": 1.0}


class Rows:
    """The ControlStore's reads that a deployment needs, over a dict; counts the campaign reads."""

    def __init__(self, *versions: dict[str, Any], campaign: dict[str, Any]) -> None:
        self.rows = {v["solutionVersionArn"]: v for v in versions} | {CAMPAIGN: campaign}
        self.reads = 0

    def get(self, arn: str, kind: str | None = None) -> dict[str, Any] | None:
        self.reads += kind == "campaign"
        return self.rows.get(arn)

    def list(self, kind: str, parent: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r.get("solutionArn") == parent and "recipeArn" in r]


class Loaded:
    """Models.get without artifacts: HRNN versions get a runtime, others none."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows

    def get(self, arn: str, artifact: str) -> Any:
        hrnn = self.rows.rows[arn]["recipeArn"] == HRNN
        return SimpleNamespace(arn=arn, runtime=object() if hrnn else None, created=None)


def campaign(solution_version: str, **config: Any) -> dict[str, Any]:
    return {"campaignArn": CAMPAIGN, "solutionArn": SOLUTION, "campaignConfig": config,
            "solutionVersionArn": f"{SOLUTION}/{solution_version}"}


def campaigns(rows: Rows, ttl_s: float = 60.0, sees: bool = True) -> tuple[Campaigns, list[str]]:
    published: list[str] = []

    async def publish(deployed: Deployed) -> None:
        published.append(deployed.model.arn)

    return Campaigns(rows, Loaded(rows), lambda arn: sees, publish, ttl_s=ttl_s), published


async def test_a_campaign_is_read_once_per_ttl_and_its_version_published_once() -> None:
    rows = Rows(version("v1"), campaign=campaign("v1", enableMetadataWithRecommendations=True))
    cache, published = campaigns(rows)
    for _ in range(5):
        deployed = await cache.get(CAMPAIGN)
    assert rows.reads == 1 and published == [f"{SOLUTION}/v1"]
    assert (deployed.recipe_type, deployed.group, deployed.metadata, deployed.artifact) == \
        ("USER_PERSONALIZATION", "shop", True, "artifacts/s/v1")


async def test_a_new_version_is_published_when_a_refresh_finds_it() -> None:
    rows = Rows(version("v1"), version("v2"), campaign=campaign("v1"))
    cache, published = campaigns(rows, ttl_s=0.0)
    await cache.get(CAMPAIGN)
    await cache.get(CAMPAIGN)
    rows.rows[CAMPAIGN] = campaign("v2")
    await cache.get(CAMPAIGN)
    await cache.get(CAMPAIGN)
    assert published == [f"{SOLUTION}/v1", f"{SOLUTION}/v2"]


async def test_versions_without_a_recurrent_state_are_not_published() -> None:
    rows = Rows(version("v1", recipe=SIMS), campaign=campaign("v1"))
    cache, published = campaigns(rows)
    assert (await cache.get(CAMPAIGN)).recipe_type == "RELATED_ITEMS"
    assert published == []


async def test_a_campaign_the_caller_cannot_see_or_that_is_gone_does_not_exist() -> None:
    rows = Rows(version("v1"), campaign=campaign("v1"))
    with pytest.raises(ResourceNotFoundException):
        await campaigns(rows, sees=False)[0].get(CAMPAIGN)
    with pytest.raises(ResourceNotFoundException):
        await campaigns(rows)[0].get(CAMPAIGN + "-other")
    assert rows.reads == 1


def test_a_synced_campaign_serves_its_solutions_newest_active_version() -> None:
    rows = Rows(version("v1"), version("v2"), version("v3", status="CREATE_PENDING"),
                campaign=campaign("v1"))
    assert serving_version(rows, campaign("v1"))["solutionVersionArn"] == f"{SOLUTION}/v1"
    synced = campaign("v1", syncWithLatestSolutionVersion=True)
    assert serving_version(rows, synced)["solutionVersionArn"] == f"{SOLUTION}/v2"
    with pytest.raises(ResourceNotFoundException):
        serving_version(rows, campaign("gone"))
