"""What a campaign answers with now, as the runtime serves it: its model, dataset group and options.

Read from the control store itself, not through the control plane's handlers: the runtime
needs a campaign's row and its solution versions' rows, nothing of the API that writes them.
Cached for ttl_s per campaign, so a request costs no store read and an update shows within
ttl_s. The stream workers keep users' HRNN state under the version a dataset group serves
(stream/live_state.py); that version is published when a refresh finds it new to this
process, and again every republish_s in case the session store lost it: once per version
change, never once per request.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from kernel.contract import dataset_group_name
from kernel.recipes import RECIPES
from serving.ab_split import ARM_TAG, SHARE_TAG, share_of
from serving.control.base import TAGS
from serving.control.recommenders import INACTIVE, VERSION_KIND, newest_active, status_of
from serving.control.solutions import trained_arn
from serving.control.store import Body, ControlStore
from serving.errors import InvalidInputException, ResourceNotFoundException
from serving.jobs import ACTIVE
from serving.models import Model, Models
from serving.ranking import Exploration, exploration_of

REPUBLISH_S = 60.0
RECOMMENDER = ":recommender/"  # in a recommender's ARN: GetRecommendations takes either


class Split(NamedTuple):
    """The campaign serving arm B of a campaign's A/B split, and the share of users it gets."""
    arm_b: str
    share: float


def split_of(tags: dict[str, str]) -> Split | None:
    """The split a campaign's tags set up (serving.ab_split), if any; checked when tagged."""
    arm_b = tags.get(ARM_TAG)
    return None if arm_b is None else Split(arm_b, share_of(tags.get(SHARE_TAG)))


class Deployed(NamedTuple):
    """What a campaign answers with now."""
    model: Model
    recipe_type: str  # USER_PERSONALIZATION, RELATED_ITEMS, PERSONALIZED_RANKING
    group: str  # dataset group name
    exploration: Exploration | None  # aws-user-personalization only
    metadata: bool  # campaignConfig.enableMetadataWithRecommendations
    artifact: str  # the version's artifact directory, relative to the data dir
    created: float  # the version's creationDateTime
    arn: str = ""  # the campaign's or the recommender's
    split: Split | None = None  # an A/B split's arm B, from the campaign's tags
    needs_user: bool = True  # a request must name a userId (trending items need none)
    drops_own: str | None = None  # a use case's: the event type of the user's items it never answers

    @property
    def noun(self) -> str:
        return "recommender" if RECOMMENDER in self.arn else "campaign"


Publish = Callable[[Deployed], Awaitable[None]]


def serving_version(resources: ControlStore, campaign: Body) -> Body:
    """The solution version a campaign answers with now: with syncWithLatestSolutionVersion the
    newest ACTIVE version of its solution, else (or while it has none) its own."""
    if campaign.get("campaignConfig", {}).get("syncWithLatestSolutionVersion"):
        versions = resources.list("solution-version", campaign["solutionArn"])
        latest = next((v for v in reversed(versions) if v["status"] == ACTIVE), None)
        if latest is not None:
            return latest
    version = resources.get(campaign["solutionVersionArn"], "solution-version")
    if version is None:
        raise ResourceNotFoundException(f"solution version {campaign['solutionVersionArn']} does not exist")
    return version


def deployment(campaign: Body, version: Body, model: Model) -> Deployed:
    """A campaign (or a recommender) serving `version` through its loaded `model`."""
    recipe = RECIPES[version["recipeArn"]]
    arn = campaign.get("campaignArn") or campaign["recommenderArn"]
    config = campaign.get("campaignConfig") or campaign.get("recommenderConfig") or {}
    exploration = None
    if recipe.explores and model.created is not None:
        trained = version.get("tunedHPOParams", {}).get("algorithmHyperParameters", {})
        exploration = exploration_of(trained, config.get("itemExplorationConfig"))
    tags = {t["tagKey"]: t["tagValue"] for t in campaign.get(TAGS, ())}
    return Deployed(model, recipe.recipe_type, dataset_group_name(version["datasetGroupArn"]), exploration,
                    bool(config.get("enableMetadataWithRecommendations")), version["artifact"],
                    version["creationDateTime"], arn, split_of(tags) if RECOMMENDER not in arn else None,
                    recipe.needs_user, recipe.drops_own)


def recommender_version(resources: ControlStore, recommender: Body) -> Body:
    """The training a recommender answers with: its newest ACTIVE one. A stopped recommender, or
    one not trained yet, answers nothing (InvalidInputException, as Personalize's)."""
    arn = recommender["recommenderArn"]
    versions = resources.list(VERSION_KIND, arn)
    status = status_of(recommender, versions)[0]
    if status != ACTIVE:
        raise InvalidInputException(f"recommender {arn} is {status}" + (
            ": StartRecommender starts it" if status == INACTIVE else "; it answers once ACTIVE"))
    version = newest_active(versions)
    assert version is not None  # status_of says ACTIVE only once one is
    return version


class Campaigns:
    """campaignArn or recommenderArn -> Deployed, cached for ttl_s. `sees` says whether the
    caller may see an ARN (its account and region); `publish` tells the stream workers which
    HRNN version a dataset group serves."""

    def __init__(self, resources: ControlStore, models: Models, sees: Callable[[str], bool],
                 publish: Publish, ttl_s: float = 1.0, republish_s: float = REPUBLISH_S) -> None:
        self.resources, self.models, self.sees, self.publish = resources, models, sees, publish
        self.ttl_s, self.republish_s = ttl_s, republish_s
        self._cache: dict[str, tuple[float, Deployed]] = {}
        self._published: dict[str, float] = {}  # model ARN -> when this process last published it

    async def get(self, arn: str) -> Deployed:
        if not self.sees(arn):
            raise ResourceNotFoundException(f"{'recommender' if RECOMMENDER in arn else 'campaign'} {arn} "
                                            "does not exist")
        now = time.monotonic()
        hit = self._cache.get(arn)
        if hit is not None and now - hit[0] <= self.ttl_s:
            return hit[1]
        deployed = self._read(arn)
        self._cache[arn] = (now, deployed)
        await self._publish(deployed, now)
        return deployed

    def _read(self, arn: str) -> Deployed:
        kind = "recommender" if RECOMMENDER in arn else "campaign"
        body = self.resources.get(arn, kind)
        if body is None:
            raise ResourceNotFoundException(f"{kind} {arn} does not exist")
        version = (recommender_version if kind == "recommender" else serving_version)(self.resources, body)
        return deployment(body, version, self.models.get(trained_arn(version), version["artifact"]))

    async def _publish(self, deployed: Deployed, now: float) -> None:
        """Publish an HRNN version new to this process, or one last published republish_s ago."""
        model = deployed.model
        if model.runtime is None or now - self._published.get(model.arn, -1e9) <= self.republish_s:
            return
        self._published[model.arn] = now
        await self.publish(deployed)
