"""The runtime API (rest-json, boto3 `personalize-runtime`): GetRecommendations
(`POST /recommendations`), GetPersonalizedRanking (`POST /personalize-ranking`) and
GetActionRecommendations (`POST /action-recommendations`, campaigns of aws-next-best-action,
which answer only it: kernel.next_best_action over the ACTIONS dataset as of now).

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
import time
from typing import Any

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from kernel.contract import MAX_IMPRESSIONS, anonymous_key
from kernel.datasets import DatasetStore
from kernel.next_best_action import DEFAULT_RESULTS as DEFAULT_ACTIONS
from kernel.next_best_action import MAX_RESULTS as MAX_ACTIONS
from kernel.next_best_action import Catalogue, propensities
from kernel.next_best_action import recommend as recommend_actions
from serving.ab_split import in_arm_b
from serving.attribution import recommendation_id
from serving.control.base import Ctx
from serving.control.filters import FilterInputs
from serving.deployed import Campaigns, Deployed
from serving.errors import InvalidInputException, ResourceNotFoundException, ThrottlingException
from serving.exclusions import Allowed, Exclusions
from serving.filters import Catalog, FilterError, FilterValueError
from serving.new_items import NewItems
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
from serving.wire import MAX_RESULTS, GetActionRecommendations, GetPersonalizedRanking, GetRecommendations
from serving.wire import Promotion as WirePromotion
from stream.live_state import NO_PAST
from stream.session import SessionState
from stream.stores import Stores

OPERATIONS = {"GetRecommendations", "GetPersonalizedRanking", "GetActionRecommendations"}
# serving/direct_routes.py answers them
DIRECT_PATHS = ("/recommendations", "/personalize-ranking", "/action-recommendations")
PERSONALIZED_ACTIONS = "PERSONALIZED_ACTIONS"  # aws-next-best-action's recipe type
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


def items_not_actions(deployed: Deployed) -> None:
    """Refuse an item request (GetRecommendations, GetPersonalizedRanking) to a campaign that
    recommends actions, as Personalize does."""
    if deployed.recipe_type == PERSONALIZED_ACTIONS:
        raise InvalidInputException(f"{deployed.noun} {deployed.arn} recommends actions (a "
                                    "PERSONALIZED_ACTIONS recipe): call GetActionRecommendations")


def item_code(deployed: Deployed, req: GetRecommendations) -> int | None:
    """The code of the item asked about, once the request has what its recipe needs."""
    noun = deployed.noun
    items_not_actions(deployed)
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
        self.new_items = NewItems(self.filters.datasets, self.filters.items_version)
        self.rates = {op: rate_limit(ctx.settings.campaign_requests_per_second) for op in OPERATIONS}
        self.trending = TrendingNow(stores.counters)  # Trending-Now's scores, from the stream's counts
        self.actions = ActionCatalogues(DatasetStore.of(ctx.settings))  # what GetActionRecommendations offers

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
        if split is not None and user_id is not None and in_arm_b(deployed.arn, user_id, split.share):
            try:
                deployed = await self.campaigns.get(split.arm_b)
            except ResourceNotFoundException:  # arm B was deleted since: the campaign serves everyone
                pass
        return await self.grown(deployed)

    async def grown(self, deployed: Deployed) -> Deployed:
        """The deployment with its model scoring the items added since training, where it can
        (serving.new_items); growing it (O(catalogue)) runs off the event loop."""
        model, group = deployed.model, deployed.group
        if not model.grows:
            return deployed
        if not self.new_items.ready(model, group):
            await asyncio.to_thread(self.new_items.of, model, group)
        return deployed._replace(model=self.new_items.of(model, group))

    async def user(self, deployed: Deployed, user_id: str | None,
                   context: dict[str, str] | None = None) -> User:
        """The user, with the session state the stream workers keep, in the request's `context`.
        An anonymous visitor asks with its sessionId as the userId (as Personalize has it), so a
        user without state falls back to that session's."""
        if user_id is None:
            return User(None, NO_PAST, context=context)
        keys = [(deployed.group, user_id), (deployed.group, anonymous_key(user_id))]
        states, _ = await self.stores.sessions.load(keys)
        live: SessionState | None = states[0] or states[1]
        return User(user_id, deployed.model.history(user_id, live.history if live is not None else ()), live,
                    context)

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


class ActionCatalogues:
    """Each dataset group's ACTIONS dataset as GetActionRecommendations offers it now: re-read when
    its manifest changes (PutActions, an import), which is looked at every `ttl_s` at most. So an
    action added or expired since training is offered or dropped within seconds, as Personalize's
    automatic updates do within two hours."""

    def __init__(self, datasets: DatasetStore, ttl_s: float = 1.0) -> None:
        self.datasets, self.ttl_s = datasets, ttl_s
        self._versions: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._built: dict[str, tuple[tuple[str, ...], Catalogue | None]] = {}

    def _version(self, group: str) -> tuple[str, ...]:
        return tuple(p.name for p in self.datasets.manifest(group, "ACTIONS").parts)

    def _build(self, group: str) -> Catalogue | None:
        table = self.datasets.read(group, "ACTIONS")
        return Catalogue.of(table["ACTION_ID"].to_pylist(), table.to_pydict()) if table.num_rows else None

    async def get(self, group: str) -> Catalogue | None:
        """The group's actions now; None while its ACTIONS dataset has none (or is gone)."""
        now = time.monotonic()
        seen = self._versions.get(group)
        if seen is None or now - seen[0] > self.ttl_s:
            seen = self._versions[group] = (now, await asyncio.to_thread(self._version, group))
        built = self._built.get(group)
        if built is None or built[0] != seen[1]:
            built = self._built[group] = (seen[1], await asyncio.to_thread(self._build, group))
        return built[1]


def action_count(req: GetActionRecommendations) -> tuple[str, int]:
    """The campaign a GetActionRecommendations asks and how many actions it wants (5 by default,
    at most 100), checked; filters are refused (they name items here: ItemID expressions)."""
    if req.campaignArn is None:
        raise InvalidInputException("campaignArn is required")
    k = DEFAULT_ACTIONS if req.numResults is None else req.numResults
    if not 1 <= k <= MAX_ACTIONS:
        raise InvalidInputException(f"numResults must be between 1 and {MAX_ACTIONS}, not {k}")
    if req.filterArn is not None:
        raise InvalidInputException("filterArn: filters on action recommendations (ActionID, Actions, "
                                    "Action_Interactions expressions) are not supported")
    return req.campaignArn, k


def make_router(ctx: Ctx, stores: Stores) -> APIRouter:
    router = APIRouter(tags=["runtime (rest-json)"])
    runtime = Runtime(ctx, stores)

    @router.post("/recommendations", summary="GetRecommendations: the top items for a user or item")
    async def get_recommendations(req: GetRecommendations) -> Response:
        arn, k = result_count(req)
        deployed = await runtime.arm(await runtime.campaign("GetRecommendations", arn), req.userId)
        columns = await runtime.columns(deployed, req.metadataColumns, k)
        code = item_code(deployed, req)
        user = await runtime.user(deployed, req.userId, req.context)
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
        items_not_actions(deployed)
        columns = await runtime.columns(deployed, req.metadataColumns, len(req.inputList))
        user = await runtime.user(deployed, req.userId, req.context)
        allowed = await runtime.allowed(deployed, req.filterArn, req.filterValues, user, None)
        items = rank(deployed.model, user, req.inputList, allowed)
        return await runtime.respond("personalizedRanking", deployed, items, columns)

    @router.post("/action-recommendations", summary="GetActionRecommendations: the actions a user will take")
    async def get_action_recommendations(req: GetActionRecommendations) -> Response:
        arn, k = action_count(req)
        deployed = await runtime.arm(await runtime.campaign("GetActionRecommendations", arn), req.userId)
        model = deployed.model.actions
        if model is None:
            raise InvalidInputException(f"{deployed.noun} {deployed.arn} recommends items: call "
                                        "GetRecommendations (GetActionRecommendations takes a campaign of "
                                        "a PERSONALIZED_ACTIONS recipe, aws-next-best-action)")
        user = await runtime.user(deployed, req.userId)
        taken = model.taken(req.userId)
        catalogue = await runtime.actions.get(deployed.group) or Catalogue.trained(model)
        chosen = recommend_actions(model, catalogue, propensities(model, user.past.codes, taken[0]), taken,
                                   time.time(), k)
        body = {"actionList": [{"actionId": a, "score": s} for a, s in chosen],
                "recommendationId": recommendation_id(deployed.arn)}
        return Response(orjson.dumps(body), media_type="application/json")

    return router
