"""The runtime API (rest-json, boto3 `personalize-runtime`): GetRecommendations
(`POST /recommendations`) and GetPersonalizedRanking (`POST /personalize-ranking`).

The routes do a request's I/O and checks, in this order: resolve the campaign (cached,
serving.deployed), the per-campaign rate, the arm of its A/B split that answers the user (if
it has one: serving.ab_split), the metadata columns asked for, the user's session
state (one store round trip), the filters' answers (cached where they depend on the filter
values only, serving.control.filters). The recommendation itself is serving.recommend's pure
steps. The answer's items are remembered under its recommendationId (implicit impressions),
which names the campaign that answered (serving.attribution: metric attribution).

For JSON bodies serving.direct_routes calls these very endpoints without FastAPI's
per-request machinery; FastAPI answers the rest (and every error it words), so both paths
run the same code.
"""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from kernel.contract import MAX_IMPRESSIONS, anonymous_key
from serving.ab_split import in_arm_b
from serving.attribution import recommendation_id
from serving.control.base import Ctx
from serving.control.filters import FilterInputs
from serving.deployed import Campaigns, Deployed
from serving.errors import InvalidInputException, ResourceNotFoundException, ThrottlingException
from serving.exclusions import Allowed, Exclusions
from serving.filters import Catalog, FilterError, FilterValueError
from serving.rate_limits import rate_limit
from serving.recommend import (
    RELATED_ITEMS,
    USER_PERSONALIZATION,
    Item,
    Promotion,
    User,
    excluded,
    rank,
    recommend,
)
from serving.trending import TrendingNow
from serving.wire import MAX_RESULTS, GetPersonalizedRanking, GetRecommendations
from serving.wire import Promotion as WirePromotion
from stream.live_state import NO_PAST
from stream.session import SessionState
from stream.stores import Stores

OPERATIONS = {"GetRecommendations", "GetPersonalizedRanking"}
DIRECT_PATHS = ("/recommendations", "/personalize-ranking")  # serving/direct_routes.py answers them
MAX_RESULTS_WITH_METADATA = 50  # Personalize's limit when metadataColumns are asked for
DEFAULT_RESULTS = 25


def result_count(req: GetRecommendations) -> tuple[str, int]:
    """The campaign or recommender a GetRecommendations asks (one of them) and how many items it
    wants, checked."""
    if (req.campaignArn is None) == (req.recommenderArn is None):
        raise InvalidInputException("give either campaignArn or recommenderArn")
    k = DEFAULT_RESULTS if req.numResults is None else req.numResults
    if not 1 <= k <= MAX_RESULTS:
        raise InvalidInputException(f"numResults must be between 1 and {MAX_RESULTS}, not {k}")
    return req.campaignArn or req.recommenderArn or "", k


def item_code(deployed: Deployed, req: GetRecommendations) -> int | None:
    """The code of the item asked about, once the request has what its recipe needs."""
    noun = deployed.noun
    if deployed.recipe_type == RELATED_ITEMS:
        if req.itemId is None:
            raise InvalidInputException(f"itemId is required for a related-items {noun}")
    elif deployed.recipe_type != USER_PERSONALIZATION:
        raise InvalidInputException(f"{noun} {deployed.arn} ranks lists: call GetPersonalizedRanking")
    if req.userId is None and deployed.needs_user and (
            deployed.recipe_type == USER_PERSONALIZATION or deployed.drops_own):
        raise InvalidInputException(f"userId is required for this {noun}")
    return None if req.itemId is None else deployed.model.index.get(req.itemId)


class Runtime:
    """The reads both routes make: campaigns, rates, the user's live state, filters, metadata."""

    def __init__(self, ctx: Ctx, stores: Stores) -> None:
        assert ctx.models is not None
        self.ctx, self.stores = ctx, stores
        self.campaigns = Campaigns(ctx.resources, ctx.models, ctx.sees, self.publish)
        self.filters = FilterInputs(ctx)
        self.rates = {op: rate_limit(ctx.settings.campaign_requests_per_second) for op in OPERATIONS}
        self.trending = TrendingNow(stores.counters)  # Trending-Now's scores, from the stream's counts

    async def publish(self, deployed: Deployed) -> None:
        """Tell the stream workers to keep users' state under the campaign's HRNN version."""
        await self.stores.models.publish(deployed.group, deployed.model.arn, deployed.artifact,
                                         deployed.created)

    async def campaign(self, operation: str, arn: str) -> Deployed:
        """The campaign's deployment, within Personalize's quota: a campaign takes so many
        requests a second of each operation."""
        deployed = await self.campaigns.get(arn)
        rate = self.rates[operation]
        if wait := rate.wait(arn):
            raise ThrottlingException(f"Rate exceeded: campaign {arn} takes "
                                      f"{rate.per_second:g} {operation} requests a second", wait)
        return deployed

    async def arm(self, deployed: Deployed, user_id: str | None) -> Deployed:
        """What answers this user: the campaign, or arm B's campaign for the users its A/B split
        gives arm B (serving.ab_split). A request without a userId is served by the campaign."""
        split = deployed.split
        if split is None or user_id is None or not in_arm_b(deployed.arn, user_id, split.share):
            return deployed
        try:
            return await self.campaigns.get(split.arm_b)
        except ResourceNotFoundException:  # arm B was deleted since: the campaign serves everyone
            return deployed

    async def user(self, deployed: Deployed, user_id: str | None) -> User:
        """The user, with the session state the stream workers keep. An anonymous visitor asks
        with its sessionId as the userId (as Personalize has it), so a user without state falls
        back to that session's."""
        if user_id is None:
            return User(None, NO_PAST)
        keys = [(deployed.group, user_id), (deployed.group, anonymous_key(user_id))]
        states, _ = await self.stores.sessions.load(keys)
        live: SessionState | None = states[0] or states[1]
        return User(user_id, deployed.model.history(user_id, live.history if live is not None else ()), live)

    async def catalog(self, deployed: Deployed) -> Catalog:
        """The items' metadata; its first build (seconds at 1M items) runs off the event loop."""
        if not self.filters.catalog_ready(deployed.model, deployed.group):
            await asyncio.to_thread(self.filters.catalog, deployed.model, deployed.group)
        return self.filters.catalog(deployed.model, deployed.group)

    async def allowed(self, deployed: Deployed, filter_arn: str | None, values: dict[str, str] | None,
                      user: User, code: int | None) -> Allowed | None:
        """What a filter lets through (Personalize's expression language); None: no filter."""
        if filter_arn is None:
            return None
        model, group, filters = deployed.model, deployed.group, self.filters
        f = filters.filter(filter_arn, group)
        await self.catalog(deployed)
        try:
            return filters.allowed(
                f, model, group, values=values, interactions=user.past.typed,
                user=lambda: filters.user(group, user.id) if user.id is not None else None,
                current_item=code)
        except (FilterError, FilterValueError) as exc:
            raise InvalidInputException(f"filter {filter_arn}: {exc}") from None

    async def promotion(self, deployed: Deployed, promotions: list[WirePromotion] | None, user: User,
                        code: int | None) -> Promotion | None:
        """The request's promotion, with what its filter lets through."""
        if not promotions:
            return None
        promo = promotions[0]
        allowed = await self.allowed(deployed, promo.filterArn, promo.filterValues, user, code)
        return Promotion(promo.name, promo.percentPromotedItems, allowed)

    async def columns(self, deployed: Deployed, asked: dict[str, list[str]] | None, k: int) -> list[str]:
        """The ITEMS columns asked for (metadataColumns), checked as Personalize checks them."""
        if not asked:
            return []
        if not deployed.metadata:
            raise InvalidInputException("metadataColumns needs a campaign created with "
                                        "campaignConfig.enableMetadataWithRecommendations")
        if other := sorted(set(asked) - {"ITEMS"}):
            raise InvalidInputException(f"metadataColumns: only ITEMS columns, not {other[0]}")
        if k > MAX_RESULTS_WITH_METADATA:
            raise InvalidInputException(f"with metadataColumns, at most {MAX_RESULTS_WITH_METADATA} "
                                        f"results, not {k}")
        have = {c.upper(): c for c in (await self.catalog(deployed)).columns}
        missing = [c for c in asked["ITEMS"] if c.upper() not in have]
        if missing:
            raise InvalidInputException(f"metadataColumns: the ITEMS dataset has no column {missing[0]}")
        return asked["ITEMS"]

    async def with_metadata(self, deployed: Deployed, items: list[Item], columns: list[str]) -> list[Item]:
        """Each item's values of `columns` (as strings, as Personalize returns them), if it has any."""
        if not columns:
            return items
        table = (await self.catalog(deployed)).columns
        have = {c.upper(): c for c in table}
        for item in items:
            code = deployed.model.index.get(item["itemId"])
            values = {} if code is None else {c: table[have[c.upper()]][code] for c in columns}
            item["metadata"] = {c: str(v) for c, v in values.items() if v is not None}
        return items

    async def respond(self, key: str, deployed: Deployed, items: list[Item], columns: list[str]) -> Response:
        """The answer, with the items' metadata `columns`; its items remembered under its
        recommendationId (implicit impressions)."""
        items = await self.with_metadata(deployed, items, columns)
        rid = recommendation_id(deployed.arn)
        shown = [i["itemId"] for i in items[:MAX_IMPRESSIONS]]
        await self.stores.shown.remember(deployed.group, rid, shown, self.ctx.settings.recommendation_ttl_s)
        body: dict[str, Any] = {key: items, "recommendationId": rid}
        return Response(orjson.dumps(body), media_type="application/json")


def make_router(ctx: Ctx, stores: Stores) -> APIRouter:
    router = APIRouter(tags=["runtime (rest-json)"])
    runtime = Runtime(ctx, stores)

    @router.post("/recommendations", summary="GetRecommendations: the top items for a user or item")
    async def get_recommendations(req: GetRecommendations) -> Response:
        arn, k = result_count(req)
        deployed = await runtime.arm(await runtime.campaign("GetRecommendations", arn), req.userId)
        columns = await runtime.columns(deployed, req.metadataColumns, k)
        code = item_code(deployed, req)
        user = await runtime.user(deployed, req.userId)
        allowed = await runtime.allowed(deployed, req.filterArn, req.filterValues, user, code)
        exclusions = Exclusions.of(deployed.model.n_items, excluded(deployed.recipe_type, code, user,
                                                                   deployed.drops_own), allowed)
        promotion = await runtime.promotion(deployed, req.promotions, user, code)
        await runtime.trending.refresh(deployed.model, deployed.group)  # a trending model's scores now
        items = recommend(deployed.model, deployed.recipe_type, user, code, exclusions, k,
                          promotion=promotion, exploration=deployed.exploration)
        return await runtime.respond("itemList", deployed, items, columns)

    @router.post("/personalize-ranking", summary="GetPersonalizedRanking: order a list for a user")
    async def get_personalized_ranking(req: GetPersonalizedRanking) -> Response:
        deployed = await runtime.arm(await runtime.campaign("GetPersonalizedRanking", req.campaignArn),
                                     req.userId)
        columns = await runtime.columns(deployed, req.metadataColumns, len(req.inputList))
        user = await runtime.user(deployed, req.userId)
        allowed = await runtime.allowed(deployed, req.filterArn, req.filterValues, user, None)
        items = rank(deployed.model, user, req.inputList, allowed)
        return await runtime.respond("personalizedRanking", deployed, items, columns)

    return router
