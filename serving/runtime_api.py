"""The runtime API (rest-json, boto3 `personalize-runtime`): GetRecommendations
(`POST /recommendations`) and GetPersonalizedRanking (`POST /personalize-ranking`).

One request: resolve the campaign to its model (cached), read the user's session state
(one store round trip), score the catalogue, drop what the user has seen and what the
filter excludes, take the top k. Scores are normalised over the catalogue so they sum
to 1, like Personalize's: a softmax of the model's logits for HRNN recipes, counts or
similarities divided by their sum for popularity and SIMS.
"""
from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.responses import Response

from serving.campaigns_api import serving_version
from serving.control_api import Ctx
from serving.errors import InvalidInputException, ResourceNotFoundException
from serving.filters import FilterError, FilterValueError
from serving.filters import allowed as allowed_items
from serving.filters_api import FilterInputs
from serving.models import Model
from serving.ranking import Exploration, exploration_of, explore, normalise, top, young
from stream.contract import dataset_group_name
from stream.recipes import RECIPES
from stream.session import Interaction
from stream.store import SessionStore

OPERATIONS = {"GetRecommendations", "GetPersonalizedRanking"}
Str256 = Annotated[str, StringConstraints(max_length=256)]
MAX_RESULTS = 500


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GetRecommendations(Wire):
    campaignArn: Str256 | None = None
    recommenderArn: Str256 | None = None
    itemId: Str256 | None = None
    userId: Str256 | None = None
    numResults: Annotated[int, Field(ge=0)] | None = None
    context: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    filterArn: Str256 | None = None
    filterValues: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    promotions: list[dict[str, Any]] | None = None
    metadataColumns: dict[str, list[str]] | None = None


class GetPersonalizedRanking(Wire):
    campaignArn: Str256
    inputList: Annotated[list[Str256], Field(min_length=1, max_length=MAX_RESULTS)]
    userId: Str256
    context: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    filterArn: Str256 | None = None
    filterValues: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    metadataColumns: dict[str, list[str]] | None = None


class Campaigns:
    """campaignArn -> (its current model, recipe type, dataset group), cached for ttl_s so a
    request costs no SQLite read; an update shows within ttl_s."""

    def __init__(self, ctx: Ctx, ttl_s: float = 1.0) -> None:
        self.ctx, self.ttl_s = ctx, ttl_s
        self._cache: dict[str, tuple[float, Model, str, str, Exploration | None]] = {}

    def get(self, arn: str) -> tuple[Model, str, str, Exploration | None]:
        """The campaign's model, recipe type, dataset group name, and exploration (user-personalization)."""
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
            hit = self._cache[arn] = (now, model, RECIPES[version["recipeArn"]].recipe_type,
                                      dataset_group_name(version["datasetGroupArn"]), explore)
        return hit[1], hit[2], hit[3], hit[4]


def make_router(ctx: Ctx, store: SessionStore) -> APIRouter:
    router = APIRouter(tags=["runtime (rest-json)"])
    campaigns = Campaigns(ctx)
    filters = FilterInputs(ctx)

    def filtered(allowed: np.ndarray, model: Model, group: str, filter_arn: str | None,
                 values: dict[str, str] | None, past: list[Interaction], user_id: str | None,
                 item_code: int | None) -> np.ndarray:
        """`allowed` narrowed by the request's filter (Personalize's expression language)."""
        if filter_arn is None:
            return allowed
        f = filters.filter(filter_arn, group)
        try:
            keep = allowed_items(
                f, filters.catalog(model, group), values=values,
                interactions=[(model.index[i.item], i.type) for i in past if i.item in model.index],
                user=filters.user(group, user_id) if f.uses_users and user_id is not None else None,
                current_item=item_code)
        except (FilterError, FilterValueError) as exc:
            raise InvalidInputException(f"filter {filter_arn}: {exc}") from None
        return allowed & keep

    async def history(dataset_group: str, user_id: str | None) -> list[Interaction]:
        if user_id is None:
            return []
        states, _ = await store.load([(dataset_group, user_id)])
        return list(states[0].history) if states[0] is not None else []

    def respond(key: str, model: Model, codes: np.ndarray, scores: np.ndarray) -> Response:
        """`scores[i]` is the score of item `codes[i]`."""
        items = [{"itemId": model.item_ids[c], "score": round(s, 7)}
                 for c, s in zip(codes.tolist(), scores.tolist(), strict=True)]
        return Response(orjson.dumps({key: items, "recommendationId": f"RID-{uuid.uuid4()}"}),
                        media_type="application/json")

    @router.post("/recommendations", summary="GetRecommendations: the top items for a user or item")
    async def get_recommendations(req: GetRecommendations) -> Response:
        if req.campaignArn is None:
            raise InvalidInputException("campaignArn is required (recommenders are not supported yet)")
        k = 25 if req.numResults is None else req.numResults
        if not 1 <= k <= MAX_RESULTS:
            raise InvalidInputException(f"numResults must be between 1 and {MAX_RESULTS}, not {k}")
        model, recipe_type, group, exploration = campaigns.get(req.campaignArn)
        allowed = np.ones(model.n_items, dtype=bool)
        code = None if req.itemId is None else model.index.get(req.itemId)
        past: list[Interaction] = []
        if req.userId is not None:
            past = model.history(req.userId, await history(group, req.userId))
        if recipe_type == "RELATED_ITEMS":
            if req.itemId is None:
                raise InvalidInputException("itemId is required for a related-items campaign")
            scores = model.popularity if code is None else model.related_scores(code)
            if code is not None:
                allowed[code] = False
            allowed = filtered(allowed, model, group, req.filterArn, req.filterValues, past, req.userId, code)
        elif recipe_type == "USER_PERSONALIZATION":
            if req.userId is None:
                raise InvalidInputException("userId is required for a user-personalization campaign")
            allowed[[model.index[i.item] for i in past if i.item in model.index]] = False
            allowed = filtered(allowed, model, group, req.filterArn, req.filterValues, past, req.userId, code)
            exploring = exploration is not None and model.created is not None
            if not exploring and (found := model.approximate_top(past, req.userId, allowed, k)) is not None:
                return respond("itemList", model, *found)  # large catalogs: the ANN index's top k
            scores = model.user_scores(past, req.userId)
        else:
            raise InvalidInputException(f"campaign {req.campaignArn} ranks lists: "
                                        "call GetPersonalizedRanking")
        probs = normalise(scores, model.recipe)
        if exploration is None or model.created is None:
            codes = top(scores, allowed, k)
            return respond("itemList", model, codes, probs[codes])
        fresh = young(model.created, model.data_cut, exploration.age_cut_off_days)
        rng = np.random.default_rng()
        codes = explore(probs, allowed, k, fresh, model.popularity, exploration.weight, rng)
        return respond("itemList", model, codes, probs[codes])

    @router.post("/personalize-ranking", summary="GetPersonalizedRanking: order a list for a user")
    async def get_personalized_ranking(req: GetPersonalizedRanking) -> Response:
        model, _, group, _ = campaigns.get(req.campaignArn)
        past = model.history(req.userId, await history(group, req.userId))
        scores = normalise(model.user_scores(past, req.userId), model.recipe)
        keep = filtered(np.ones(model.n_items, dtype=bool), model, group, req.filterArn, req.filterValues,
                        past, req.userId, None)
        known = [(i, model.index[i]) for i in dict.fromkeys(req.inputList)
                 if i in model.index and keep[model.index[i]]]
        unknown = [i for i in dict.fromkeys(req.inputList) if i not in model.index]
        ranked = sorted(known, key=lambda p: -scores[p[1]])
        items = [{"itemId": i, "score": round(float(scores[c]), 7)} for i, c in ranked] + \
            [{"itemId": i, "score": 0.0} for i in unknown]  # items the model does not know go last
        body = {"personalizedRanking": items, "recommendationId": f"RID-{uuid.uuid4()}"}
        return Response(orjson.dumps(body), media_type="application/json")

    return router
