"""The runtime API (rest-json, boto3 `personalize-runtime`): GetRecommendations
(`POST /recommendations`) and GetPersonalizedRanking (`POST /personalize-ranking`).

One request: resolve the campaign to its model (cached), read the user's session state
(one store round trip), score the catalogue, drop what the filter excludes (and, for related
items, the item asked about), take the top k. Items the user interacted with are not dropped
unless the filter says so: Amazon Personalize's campaigns recommend them too ("watch again",
"buy again"), and leave them out only through a filter such as `EXCLUDE ItemID WHERE
Interactions.EVENT_TYPE IN ("purchase")`. On large catalogs the ANN index answers instead,
with the excluded items and the filter's (cached) answer as ID selectors (serving.exclusions):
no work over the whole catalogue per request. Scores are normalised over the catalogue so
they sum to 1, like Personalize's: a softmax of the model's logits for HRNN recipes, counts
or similarities divided by their sum for popularity and SIMS. GetPersonalizedRanking scores
only the input items, with the same function, and normalises over those it returns (as
Personalize's do, they sum to 1); items the model does not know come last with score 0.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any, NamedTuple

import numpy as np
import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.responses import Response

from serving import service_model
from serving.campaigns_api import serving_version
from serving.control_api import Ctx
from serving.errors import InvalidInputException, ResourceNotFoundException, ThrottlingException
from serving.exclusions import Allowed, Exclusions
from serving.filters import Catalog, FilterError, FilterValueError
from serving.filters_api import FilterInputs
from serving.models import Model
from serving.ranking import (
    Exploration,
    exploration_of,
    explore,
    normalise,
    probabilities,
    promote,
    rank_list,
    young,
)
from serving.rate_limits import rate_limit
from stream.contract import MAX_IMPRESSIONS, anonymous_key, dataset_group_name
from stream.live_state import NO_PAST, Past
from stream.recipes import RECIPES
from stream.session import SessionState
from stream.store import SessionStore

OPERATIONS = {"GetRecommendations", "GetPersonalizedRanking"}
DIRECT_PATHS = ("/recommendations", "/personalize-ranking")  # serving/direct_routes.py answers them
Str256 = Annotated[str, StringConstraints(max_length=256)]
MAX_RESULTS = 500
MAX_RESULTS_WITH_METADATA = 50  # Personalize's limit when metadataColumns are asked for


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PROMOTION_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9\-_]*$"


class Promotion(Wire):
    name: Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=PROMOTION_NAME)]
    percentPromotedItems: Annotated[int, Field(ge=1, le=100)]
    filterArn: Str256
    filterValues: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None


class GetRecommendations(Wire):
    campaignArn: Str256 | None = None
    recommenderArn: Str256 | None = None
    itemId: Str256 | None = None
    userId: Str256 | None = None
    numResults: Annotated[int, Field(ge=0)] | None = None
    context: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    filterArn: Str256 | None = None
    filterValues: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    promotions: Annotated[list[Promotion], Field(max_length=1)] | None = None
    metadataColumns: dict[str, list[str]] | None = None
    _botocore = model_validator(mode="before")(service_model.before("personalize-runtime",
                                                                    "GetRecommendations"))


class GetPersonalizedRanking(Wire):
    campaignArn: Str256
    inputList: Annotated[list[Str256], Field(min_length=1, max_length=MAX_RESULTS)]
    userId: Str256
    context: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    filterArn: Str256 | None = None
    filterValues: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    metadataColumns: dict[str, list[str]] | None = None
    _botocore = model_validator(mode="before")(service_model.before("personalize-runtime",
                                                                    "GetPersonalizedRanking"))


class Deployed(NamedTuple):
    """What a campaign answers with now."""
    model: Model
    recipe_type: str  # USER_PERSONALIZATION, RELATED_ITEMS, PERSONALIZED_RANKING
    group: str  # dataset group name
    exploration: Exploration | None  # aws-user-personalization only
    metadata: bool  # campaignConfig.enableMetadataWithRecommendations
    artifact: str  # the version's artifact directory, relative to the data dir
    created: float  # the version's creationDateTime


class Campaigns:
    """campaignArn -> what it answers with, cached for ttl_s so a request costs no SQLite read;
    an update shows within ttl_s."""

    def __init__(self, ctx: Ctx, ttl_s: float = 1.0) -> None:
        self.ctx, self.ttl_s = ctx, ttl_s
        self._cache: dict[str, tuple[float, Deployed]] = {}

    def get(self, arn: str) -> Deployed:
        if not self.ctx.sees(arn):
            raise ResourceNotFoundException(f"campaign {arn} does not exist")
        now = time.monotonic()
        hit = self._cache.get(arn)
        if hit is None or now - hit[0] > self.ttl_s:
            campaign = self.ctx.resources.get(arn, "campaign")
            if campaign is None:
                raise ResourceNotFoundException(f"campaign {arn} does not exist")
            version = serving_version(self.ctx, campaign)
            model = self.ctx.models.get(version["solutionVersionArn"], version["artifact"])
            explore = None
            if RECIPES[version["recipeArn"]].name == "aws-user-personalization" and model.created is not None:
                trained = version.get("tunedHPOParams", {}).get("algorithmHyperParameters", {})
                config = campaign.get("campaignConfig", {}).get("itemExplorationConfig")
                explore = exploration_of(trained, config)
            metadata = bool(campaign.get("campaignConfig", {}).get("enableMetadataWithRecommendations"))
            group = dataset_group_name(version["datasetGroupArn"])
            hit = self._cache[arn] = (now, Deployed(model, RECIPES[version["recipeArn"]].recipe_type, group,
                                                    explore, metadata, version["artifact"],
                                                    version["creationDateTime"]))
        return hit[1]


def make_router(ctx: Ctx, store: SessionStore) -> APIRouter:
    router = APIRouter(tags=["runtime (rest-json)"])
    campaigns = Campaigns(ctx)
    rates = {op: rate_limit(ctx.settings.campaign_requests_per_second) for op in OPERATIONS}

    def throttle(operation: str, campaign_arn: str) -> None:
        """Personalize's quota: a campaign takes so many requests a second of each operation."""
        if wait := rates[operation].wait(campaign_arn):
            raise ThrottlingException(f"Rate exceeded: campaign {campaign_arn} takes "
                                      f"{rates[operation].per_second:g} {operation} requests a second", wait)
    filters = FilterInputs(ctx)
    published: dict[str, float] = {}  # versions this process told the workers about, and when

    async def catalog(model: Model, group: str) -> Catalog:
        """The items' metadata; its first build (seconds at 1M items) runs off the event loop."""
        if not filters.catalog_ready(model, group):
            await asyncio.to_thread(filters.catalog, model, group)
        return filters.catalog(model, group)

    async def filtered(model: Model, group: str, filter_arn: str | None, values: dict[str, str] | None,
                       past: Past, user_id: str | None, item_code: int | None) -> Allowed | None:
        """What the request's filter lets through (Personalize's expression language); None: no filter."""
        if filter_arn is None:
            return None
        f = filters.filter(filter_arn, group)
        await catalog(model, group)
        try:
            return filters.allowed(
                f, model, group, values=values,
                interactions=past.typed,
                user=lambda: filters.user(group, user_id) if user_id is not None else None,
                current_item=item_code)
        except (FilterError, FilterValueError) as exc:
            raise InvalidInputException(f"filter {filter_arn}: {exc}") from None

    async def session(deployed: Deployed, user_id: str | None) -> SessionState | None:
        """The user's session state; an anonymous visitor asks with its sessionId as the userId
        (as Personalize has it), so a user without state falls back to that session's. The
        requests for a campaign's HRNN version tell the workers to keep users' state under it (again
        every minute, in case the store lost it)."""
        now = time.monotonic()
        if deployed.model.runtime is not None and now - published.get(deployed.model.arn, -1e9) > 60:
            published[deployed.model.arn] = now
            await store.publish_live_model(deployed.group, deployed.model.arn, deployed.artifact,
                                           deployed.created)
        if user_id is None:
            return None
        states, _ = await store.load([(deployed.group, user_id), (deployed.group, anonymous_key(user_id))])
        return states[0] or states[1]

    async def respond(key: str, deployed: Deployed, items: list[dict[str, Any]],
                      columns: list[str]) -> Response:
        """The answer, with the items' metadata `columns`; its items remembered under its
        recommendationId (implicit impressions)."""
        items = await with_metadata(deployed, items, columns)
        rid = f"RID-{uuid.uuid4()}"
        shown = [i["itemId"] for i in items[:MAX_IMPRESSIONS]]
        await store.remember(deployed.group, rid, shown, ctx.settings.recommendation_ttl_s)
        return Response(orjson.dumps({key: items, "recommendationId": rid}), media_type="application/json")

    def scored(model: Model, codes: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
        """The answer's items: `probs[j]` is the probability of `codes[j]`."""
        ids = model.item_ids
        return [{"itemId": ids[c], "score": round(p, 7)}
                for c, p in zip(codes.tolist(), probs.tolist(), strict=True)]

    async def check_metadata(deployed: Deployed, columns: dict[str, list[str]] | None, k: int) -> list[str]:
        """The ITEMS columns asked for (metadataColumns), checked as Personalize checks them."""
        if not columns:
            return []
        if not deployed.metadata:
            raise InvalidInputException("metadataColumns needs a campaign created with "
                                        "campaignConfig.enableMetadataWithRecommendations")
        if other := sorted(set(columns) - {"ITEMS"}):
            raise InvalidInputException(f"metadataColumns: only ITEMS columns, not {other[0]}")
        if k > MAX_RESULTS_WITH_METADATA:
            raise InvalidInputException(f"with metadataColumns, at most {MAX_RESULTS_WITH_METADATA} "
                                        f"results, not {k}")
        have = {c.upper(): c for c in (await catalog(deployed.model, deployed.group)).columns}
        missing = [c for c in columns["ITEMS"] if c.upper() not in have]
        if missing:
            raise InvalidInputException(f"metadataColumns: the ITEMS dataset has no column {missing[0]}")
        return columns["ITEMS"]

    async def with_metadata(deployed: Deployed, items: list[dict[str, Any]],
                      columns: list[str]) -> list[dict[str, Any]]:
        """Each item's values of `columns` (as strings, as Personalize returns them), if it has any."""
        if not columns:
            return items
        table = (await catalog(deployed.model, deployed.group)).columns
        have = {c.upper(): c for c in table}
        for item in items:
            code = deployed.model.index.get(item["itemId"])
            values = {} if code is None else {c: table[have[c.upper()]][code] for c in columns}
            item["metadata"] = {c: str(v) for c, v in values.items() if v is not None}
        return items

    @router.post("/recommendations", summary="GetRecommendations: the top items for a user or item")
    async def get_recommendations(req: GetRecommendations) -> Response:
        if req.campaignArn is None:
            raise InvalidInputException("campaignArn is required (recommenders are not supported yet)")
        k = 25 if req.numResults is None else req.numResults
        if not 1 <= k <= MAX_RESULTS:
            raise InvalidInputException(f"numResults must be between 1 and {MAX_RESULTS}, not {k}")
        deployed = campaigns.get(req.campaignArn)
        throttle("GetRecommendations", req.campaignArn)
        model, recipe_type, group = deployed.model, deployed.recipe_type, deployed.group
        columns = await check_metadata(deployed, req.metadataColumns, k)
        code = None if req.itemId is None else model.index.get(req.itemId)
        state = await session(deployed, req.userId)
        past = NO_PAST
        if req.userId is not None:
            past = model.history(req.userId, state.history if state is not None else ())
        if recipe_type == "RELATED_ITEMS":
            if req.itemId is None:
                raise InvalidInputException("itemId is required for a related-items campaign")
            excluded = NO_PAST.codes if code is None else np.array([code])
        elif recipe_type == "USER_PERSONALIZATION":
            if req.userId is None:
                raise InvalidInputException("userId is required for a user-personalization campaign")
            excluded = NO_PAST.codes  # what the user interacted with stays unless the filter drops it
        else:
            raise InvalidInputException(f"campaign {req.campaignArn} ranks lists: "
                                        "call GetPersonalizedRanking")
        exclusions = Exclusions.of(model.n_items, excluded, await filtered(
            model, group, req.filterArn, req.filterValues, past, req.userId, code))
        exploration = deployed.exploration  # set only for models that know their items' ages
        plain = not req.promotions and exploration is None
        if plain and recipe_type == "USER_PERSONALIZATION" and \
                (found := model.approximate_top(past, req.userId, exclusions, k, state)) is not None:
            codes, chosen = found  # large catalogs: the ANN index's top k (estimated probabilities)
            items = scored(model, codes, chosen)
            return await respond("itemList", deployed, items, columns)
        if recipe_type == "RELATED_ITEMS":  # the exact path: O(catalog)
            scores = model.popularity if code is None else model.related_scores(code)
        else:
            scores = model.user_scores(past, req.userId, state)
        if plain:
            codes = exclusions.top(scores, k)
            items = scored(model, codes, probabilities(scores, codes, model.recipe))
            return await respond("itemList", deployed, items, columns)
        allowed = exclusions.mask()
        probs = normalise(scores, model.recipe)
        if req.promotions:  # the promotion's filter picks its items; the request's filter the others
            promo = req.promotions[0]
            promotable = Exclusions(model.n_items, exclusions.codes, await filtered(
                model, group, promo.filterArn, promo.filterValues, past, req.userId, code)).mask()
            codes, promoted = promote(probs, allowed, promotable, k, promo.percentPromotedItems,
                                      np.random.default_rng())
            items = scored(model, codes, probs[codes])
            for item, is_promoted in zip(items, promoted.tolist(), strict=True):
                if is_promoted:
                    item["promotionName"] = promo.name
            return await respond("itemList", deployed, items, columns)
        assert exploration is not None and model.created is not None
        fresh = young(model.created, model.data_cut, exploration.age_cut_off_days)
        rng = np.random.default_rng()
        codes = explore(probs, allowed, k, fresh, model.popularity, exploration.weight, rng)
        items = scored(model, codes, probs[codes])
        return await respond("itemList", deployed, items, columns)

    @router.post("/personalize-ranking", summary="GetPersonalizedRanking: order a list for a user")
    async def get_personalized_ranking(req: GetPersonalizedRanking) -> Response:
        deployed = campaigns.get(req.campaignArn)
        throttle("GetPersonalizedRanking", req.campaignArn)
        model, group = deployed.model, deployed.group
        columns = await check_metadata(deployed, req.metadataColumns, len(req.inputList))
        state = await session(deployed, req.userId)
        past = model.history(req.userId, state.history if state is not None else ())
        allowed = await filtered(model, group, req.filterArn, req.filterValues, past, req.userId, None)
        asked = list(dict.fromkeys(req.inputList))
        known = [i for i in asked if i in model.index]
        codes = np.array([model.index[i] for i in known], dtype=np.int64)
        if allowed is not None:  # what the filter excludes is left out
            keep = allowed.contains(codes)
            known, codes = [i for i, ok in zip(known, keep.tolist(), strict=True) if ok], codes[keep]
        order, probs = rank_list(model.scores_of(codes, past, req.userId, state), model.recipe)
        items = [{"itemId": known[j], "score": round(float(probs[j]), 7)} for j in order.tolist()] + \
            [{"itemId": i, "score": 0.0} for i in asked if i not in model.index]  # unknown items last
        return await respond("personalizedRanking", deployed, items, columns)

    return router
