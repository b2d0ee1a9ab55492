"""The control plane's deployment side: campaigns (a solution version behind an ARN).

A campaign answers GetRecommendations with its solution version's model; with
`syncWithLatestSolutionVersion` it follows the newest ACTIVE version of its solution
(Personalize's automatic updates). Create/UpdateCampaign load the model first, so the
runtime never sees a campaign whose model cannot be served, and a swap drops nothing.
"""
from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from kernel.artifact_store import ArtifactError, ArtifactUnreachable
from kernel.recipes import RECIPES
from serving.ab_split import ARM_TAG, SHARE_TAG
from serving.control.base import TAGS, Ctx, Family, Name, Req, Tags, given, operation, register
from serving.control.solutions import VERSIONS, ListBySolution
from serving.control.store import Body
from serving.deployed import serving_version, split_of
from serving.errors import (
    InvalidInputException,
    ResourceInUseException,
    ResourceNotFoundException,
    ServiceUnavailableException,
)
from serving.jobs import ACTIVE
from serving.ranking import parse_exploration
from serving.wire import Arn


class CampaignConfig(Req):
    itemExplorationConfig: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    enableMetadataWithRecommendations: bool | None = None
    syncWithLatestSolutionVersion: bool | None = None
    rankingInfluence: dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None


class CreateCampaign(Req):
    name: Name
    solutionVersionArn: Arn
    minProvisionedTPS: Annotated[int, Field(ge=1)] | None = None
    campaignConfig: CampaignConfig | None = None
    tags: Tags | None = None


class CampaignArn(Req):
    campaignArn: Arn


class UpdateCampaign(Req):
    campaignArn: Arn
    solutionVersionArn: Arn | None = None
    minProvisionedTPS: Annotated[int, Field(ge=1)] | None = None
    campaignConfig: CampaignConfig | None = None


def _split_checked(ctx: Ctx, campaign: Body, tags: dict[str, str]) -> None:
    """An A/B split's tags (serving.ab_split) name another campaign of the caller's, of the same
    dataset group and kind of recipe and with no split of its own, and a share in (0, 1)."""
    if SHARE_TAG in tags and ARM_TAG not in tags:
        raise InvalidInputException(f"tag {SHARE_TAG} needs {ARM_TAG}: the campaign serving arm B")
    try:
        split = split_of(tags)
    except ValueError as exc:
        raise InvalidInputException(f"tag {exc}") from None
    if split is None:
        return
    if split.arm_b == campaign["campaignArn"]:
        raise InvalidInputException(f"tag {ARM_TAG}: a campaign cannot be its own arm B")
    other = CAMPAIGNS.get(ctx, split.arm_b)
    if other["datasetGroupArn"] != campaign["datasetGroupArn"]:
        raise InvalidInputException(f"tag {ARM_TAG}: campaign {split.arm_b} is of another dataset group")
    if any(t["tagKey"] == ARM_TAG for t in other.get(TAGS, ())):
        raise InvalidInputException(f"tag {ARM_TAG}: campaign {split.arm_b} splits its own traffic")
    kinds = {RECIPES[serving_version(ctx.resources, c)["recipeArn"]].recipe_type for c in (campaign, other)}
    if len(kinds) > 1:
        raise InvalidInputException(f"tag {ARM_TAG}: campaign {split.arm_b} answers another kind of request")


def _an_arm(ctx: Ctx, campaign: Body) -> str | None:
    """Why a campaign serving another's arm B may not be deleted."""
    arn = campaign["campaignArn"]
    for other in ctx.resources.list(CAMPAIGNS.kind, account=ctx.account, region=ctx.region):
        if any(t["tagKey"] == ARM_TAG and t["tagValue"] == arn for t in other.get(TAGS, ())):
            return (f"campaign {arn} serves arm B of campaign {other['campaignArn']}'s A/B split; "
                    f"untag {ARM_TAG} there first")
    return None


CAMPAIGNS = register(Family("campaign", CampaignArn, ListBySolution, (
    "name", "campaignArn", "status", "creationDateTime", "lastUpdatedDateTime", "failureReason"),
    parent="solutionArn", tags_checked=_split_checked), delete=True, in_use=_an_arm)


def deployable(ctx: Ctx, version_arn: str) -> Body:
    """An ACTIVE solution version whose model loads; raises the error a user can act on."""
    version = VERSIONS.get(ctx, version_arn)
    if RECIPES[version["recipeArn"]].segments_users:
        raise InvalidInputException(f"solution version {version_arn} makes user segments, which batch "
                                    "segment jobs give: a campaign cannot deploy it")
    if version["status"] != ACTIVE:
        raise ResourceInUseException(f"solution version {version_arn} is {version['status']}; "
                                     "only an ACTIVE version can be deployed")
    try:  # load now (from the bucket: download and verify): the swap must not stall requests
        ctx.models.get(version_arn, version["artifact"])
    except ArtifactUnreachable as exc:  # the object store is down: nothing changed, try again
        raise ServiceUnavailableException(f"solution version {version_arn}: {exc}") from None
    except ArtifactError as exc:  # missing or corrupt: the version cannot be served
        raise ResourceInUseException(f"solution version {version_arn} cannot be deployed: {exc}") from None
    return version


def _config(config: CampaignConfig | None) -> Body:
    out = (config or CampaignConfig()).model_dump(exclude_none=True)
    try:
        parse_exploration(out.get("itemExplorationConfig"))
    except ValueError as exc:
        raise InvalidInputException(f"campaignConfig.itemExplorationConfig: {exc}") from None
    return out


@operation("CreateCampaign", CreateCampaign)
def create_campaign(req: CreateCampaign, ctx: Ctx) -> Body:
    CAMPAIGNS.within_quota(ctx)
    version = deployable(ctx, req.solutionVersionArn)
    arn = ctx.arn(CAMPAIGNS.kind, req.name)
    body = {"name": req.name, "campaignArn": arn, "solutionVersionArn": req.solutionVersionArn,
            "solutionArn": version["solutionArn"], "datasetGroupArn": version["datasetGroupArn"],
            "minProvisionedTPS": req.minProvisionedTPS or 1, "campaignConfig": _config(req.campaignConfig),
            "status": ACTIVE}
    CAMPAIGNS.add(ctx, arn, req.name, body, parent=version["solutionArn"], tags=req.tags)
    return {"campaignArn": arn}


@operation("UpdateCampaign", UpdateCampaign)
def update_campaign(req: UpdateCampaign, ctx: Ctx) -> Body:
    campaign = CAMPAIGNS.get(ctx, req.campaignArn)
    changes = given(req, "solutionVersionArn", "minProvisionedTPS")
    if req.solutionVersionArn is not None:
        version = deployable(ctx, req.solutionVersionArn)
        if version["solutionArn"] != campaign["solutionArn"]:
            raise InvalidInputException(f"solution version {req.solutionVersionArn} is not of the campaign's "
                                        f"solution {campaign['solutionArn']}")
    if req.campaignConfig is not None:
        changes["campaignConfig"] = _config(req.campaignConfig)
    kept = ("solutionVersionArn", "minProvisionedTPS", "campaignConfig")
    update = {k: changes.get(k, campaign[k]) for k in kept} | {"status": ACTIVE}
    ctx.resources.update(req.campaignArn, {**changes, "latestCampaignUpdate": update})
    return {"campaignArn": req.campaignArn}


def served_versions(ctx: Ctx) -> list[tuple[str, str, str, str]]:
    """(account, region, campaign name, the solution version it answers with now, as
    `solution/id`) for each campaign of every account: /metrics'
    `opz_api_campaign_solution_version_info`. The version names the solution and its id, not
    its ARN (labels never hold one); a campaign whose version is gone (deleted) has nothing to
    serve and is left out."""
    served = []
    for campaign in ctx.resources.list("campaign"):
        try:
            arn = serving_version(ctx.resources, campaign)["solutionVersionArn"]
        except ResourceNotFoundException:
            continue
        _, _, _, region, account, _ = campaign["campaignArn"].split(":", 5)
        served.append((account, region, campaign["name"], arn.split(":solution/", 1)[-1]))
    return served

