"""Recommenders: a domain dataset group's use case, trained and served without a recipe choice.

A recommender (CreateRecommender) names a use case of its group's domain (kernel.recipes:
`aws-vod-top-picks`, `aws-ecomm-frequently-bought-together`, ...). It owns its trainings:
each is a `recommender-version` job (the solution version's twin, trained by the same
`run_training`), started at create, again every RETRAIN_S as Personalize retrains its
recommenders, and when UpdateRecommender changes what training reads. It answers
GetRecommendations with its newest ACTIVE version (serving.deployed), so a retrain swaps
models without a gap.

Its status is what Personalize shows: while it has no trained version, that version's
(CREATE PENDING, CREATE IN_PROGRESS, CREATE FAILED); then ACTIVE, or INACTIVE between
StopRecommender and StartRecommender (stopped, it answers nothing and is not retrained).
"""
from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field, StringConstraints

from kernel.dataset_schema import parse_schema
from kernel.recipes import RECIPES, Recipe
from serving.control.base import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Req,
    Tags,
    operation,
    register,
)
from serving.control.groups import GROUPS
from serving.control.solutions import drop_artifact
from serving.control.store import Body
from serving.errors import InvalidInputException, ResourceInUseException
from serving.jobs import ACTIVE, PENDING, RUNNING, STOPPING
from serving.ranking import parse_exploration
from serving.wire import Arn, Str256

VERSION_KIND = "recommender-version"  # a recommender's training: a job, not a resource of the API
INACTIVE = "INACTIVE"
RETRAIN_S = 7 * 86400  # Personalize retrains a recommender's models every 7 days
DATASET_TYPES = ("INTERACTIONS", "ITEMS", "USERS")


class TrainingDataConfig(Req):
    excludedDatasetColumns: dict[str, list[Annotated[str, StringConstraints(max_length=150)]]] | None = None
    includedDatasetColumns: dict[str, list[Annotated[str, StringConstraints(max_length=150)]]] | None = None


class RecommenderConfig(Req):
    itemExplorationConfig: dict[str, Annotated[str, StringConstraints(max_length=1000)]] | None = None
    minRecommendationRequestsPerSecond: Annotated[int, Field(ge=1)] | None = None
    trainingDataConfig: TrainingDataConfig | None = None
    enableMetadataWithRecommendations: bool | None = None


class CreateRecommender(Req):
    name: Name
    datasetGroupArn: Arn
    recipeArn: Str256
    recommenderConfig: RecommenderConfig | None = None
    tags: Tags | None = None


class RecommenderArn(Req):
    recommenderArn: Arn


class UpdateRecommender(Req):
    recommenderArn: Arn
    recommenderConfig: RecommenderConfig


def versions_of(ctx: Ctx, recommender_arn: str) -> list[Body]:
    """Its trainings, oldest first."""
    return ctx.resources.list(VERSION_KIND, recommender_arn)


def newest_active(versions: list[Body]) -> Body | None:
    return next((v for v in reversed(versions) if v["status"] == ACTIVE), None)


def status_of(recommender: Body, versions: list[Body]) -> tuple[str, str | None]:
    """(status, failureReason) as Personalize shows them: the first training's until one is
    ACTIVE, then the recommender's own (ACTIVE or INACTIVE)."""
    if newest_active(versions) is None:
        first = versions[0] if versions else {"status": PENDING}
        return first["status"], first.get("failureReason")
    return recommender["status"], None


_UPDATE = ("recommenderConfig", "creationDateTime", "lastUpdatedDateTime")


def _shown(ctx: Ctx, recommender: Body) -> Body:
    """The stored body with what its trainings say: status, the latest update's progress and the
    newest trained version's metrics."""
    versions = versions_of(ctx, recommender["recommenderArn"])
    status, reason = status_of(recommender, versions)
    shown = {**recommender, "status": status} | ({"failureReason": reason} if reason else {})
    if len(versions) > 1:  # an update: retrained since the first
        latest = versions[-1]
        shown["latestRecommenderUpdate"] = {k: latest[k] for k in _UPDATE if k in latest} | {
            "status": latest["status"], **({"failureReason": latest["failureReason"]}
                                           if "failureReason" in latest else {})}
    if (trained := newest_active(versions)) is not None:
        shown["modelMetrics"] = trained.get("metrics", {})
    return shown


RECOMMENDERS = register(Family("recommender", RecommenderArn, ListByDatasetGroup, (
    "name", "recommenderArn", "datasetGroupArn", "recipeArn", "recommenderConfig", "status",
    "creationDateTime", "lastUpdatedDateTime"), parent="datasetGroupArn", described=_shown))


def _use_case(ctx: Ctx, group: Body, recipe_arn: str) -> Recipe:
    """The recipe, which must be a use case of the group's domain (Personalize's rule: a
    custom dataset group has solutions and campaigns instead)."""
    domain = group.get("domain")
    if domain is None:
        raise InvalidInputException(f"dataset group {group['datasetGroupArn']} has no domain: recommenders "
                                    "are for domain dataset groups (VIDEO_ON_DEMAND, ECOMMERCE); create a "
                                    "solution and a campaign instead")
    recipe = RECIPES.get(recipe_arn)
    if recipe is None or recipe.domain != domain:
        ours = ", ".join(r.arn for r in RECIPES.values() if r.domain == domain)
        raise InvalidInputException(f"recipeArn {recipe_arn} is not a {domain} use case: {ours}")
    return recipe


def _datasets(ctx: Ctx, group_arn: str) -> dict[str, Body]:
    return {d["datasetType"]: d for d in ctx.resources.list("dataset", group_arn)}


def _check_config(ctx: Ctx, recipe: Recipe, datasets: dict[str, Body], config: RecommenderConfig) -> Body:
    """The config as stored, after Personalize's checks: exploration only for a use case that
    personalizes, training columns that exist in the group's datasets."""
    out = config.model_dump(exclude_none=True)
    if config.itemExplorationConfig is not None:
        if not recipe.explores:
            raise InvalidInputException(f"recommenderConfig.itemExplorationConfig: {recipe.name} recommends "
                                        "popular or similar items, which take no exploration")
        try:
            parse_exploration(config.itemExplorationConfig)
        except ValueError as exc:
            raise InvalidInputException(f"recommenderConfig.itemExplorationConfig: {exc}") from None
    columns = (config.trainingDataConfig or TrainingDataConfig()).model_dump(exclude_none=True)
    for member, by_type in columns.items():
        for dataset_type, names in by_type.items():
            if dataset_type not in DATASET_TYPES:
                raise InvalidInputException(f"trainingDataConfig.{member}: {dataset_type} is not one of "
                                            f"{', '.join(DATASET_TYPES)}")
            if dataset_type not in datasets:
                raise InvalidInputException(f"trainingDataConfig.{member}: the dataset group has no "
                                            f"{dataset_type} dataset")
            schema = parse_schema(ctx.resources.get(datasets[dataset_type]["schemaArn"], "schema")["schema"])
            if missing := [n for n in names if schema.column(n) is None]:
                raise InvalidInputException(f"trainingDataConfig.{member}: {missing[0]} is not a column of "
                                            f"the {dataset_type} dataset")
    return out


def start_training(ctx: Ctx, recommender: Body, config: Body, *, training_type: str = "MANUAL") -> str:
    """Store a pending training of the recommender for the job runner; returns its ARN."""
    owner = recommender["recommenderArn"]
    arn = f"{owner}/{uuid.uuid4().hex[:8]}"
    body = {"name": arn.rsplit("/", 1)[1], "recommenderVersionArn": arn, "recommenderArn": owner,
            "recipeArn": recommender["recipeArn"], "datasetGroupArn": recommender["datasetGroupArn"],
            "status": PENDING, "trainingMode": "FULL", "trainingType": training_type,
            "recommenderConfig": config,
            "solutionConfig": {"trainingDataConfig": config.get("trainingDataConfig", {})}}
    ctx.resources.create(VERSION_KIND, arn, body["name"], body, parent=owner)
    ctx.wake_jobs()
    return arn


@operation("CreateRecommender", CreateRecommender)
def create_recommender(req: CreateRecommender, ctx: Ctx) -> Body:
    RECOMMENDERS.within_quota(ctx)
    group = GROUPS.get(ctx, req.datasetGroupArn)
    recipe = _use_case(ctx, group, req.recipeArn)
    datasets = _datasets(ctx, req.datasetGroupArn)
    needed = ("INTERACTIONS", "ITEMS") if recipe.needs_items else ("INTERACTIONS",)
    if missing := [t for t in needed if t not in datasets]:
        raise InvalidInputException(f"{recipe.name} trains on the {' and '.join(needed)} datasets; dataset "
                                    f"group {req.datasetGroupArn} has no {missing[0]} dataset")
    config = _check_config(ctx, recipe, datasets, req.recommenderConfig or RecommenderConfig())
    config.setdefault("minRecommendationRequestsPerSecond", 1)
    arn = ctx.arn(RECOMMENDERS.kind, req.name)
    body = {"name": req.name, "recommenderArn": arn, "datasetGroupArn": req.datasetGroupArn,
            "recipeArn": recipe.arn, "recommenderConfig": config, "status": ACTIVE}
    RECOMMENDERS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn, tags=req.tags)
    start_training(ctx, body, config)
    return {"recommenderArn": arn}


def _busy(versions: list[Body]) -> Body | None:
    return next((v for v in versions if v["status"] in (PENDING, RUNNING, STOPPING)), None)


@operation("UpdateRecommender", UpdateRecommender)
def update_recommender(req: UpdateRecommender, ctx: Ctx) -> Body:
    """A change to what training reads (trainingDataConfig) retrains it; the rest applies at once."""
    recommender = RECOMMENDERS.get(ctx, req.recommenderArn)
    versions = versions_of(ctx, req.recommenderArn)
    if _busy(versions) is not None:
        raise ResourceInUseException(f"recommender {req.recommenderArn} is training; update it once it is "
                                     "done")
    recipe = RECIPES[recommender["recipeArn"]]
    config = recommender["recommenderConfig"] | _check_config(
        ctx, recipe, _datasets(ctx, recommender["datasetGroupArn"]), req.recommenderConfig)
    ctx.resources.update(req.recommenderArn, {"recommenderConfig": config})
    if config.get("trainingDataConfig") != recommender["recommenderConfig"].get("trainingDataConfig"):
        start_training(ctx, recommender, config)
    return {"recommenderArn": req.recommenderArn}


def _switch(ctx: Ctx, arn: str, now: str, then: str, verb: str) -> Body:
    """Move a recommender shown as `now` to `then`; any other status is in the way."""
    recommender = RECOMMENDERS.get(ctx, arn)
    status = status_of(recommender, versions_of(ctx, arn))[0]
    if status != now:
        raise ResourceInUseException(f"recommender {arn} is {status}; only an {now} one {verb}")
    ctx.resources.update(arn, {"status": then})
    return {"recommenderArn": arn}


@operation("StopRecommender", RecommenderArn)
def stop_recommender(req: RecommenderArn, ctx: Ctx) -> Body:
    """Stopped, it answers no request and is not retrained, until StartRecommender."""
    return _switch(ctx, req.recommenderArn, ACTIVE, INACTIVE, "stops")


@operation("StartRecommender", RecommenderArn)
def start_recommender(req: RecommenderArn, ctx: Ctx) -> Body:
    return _switch(ctx, req.recommenderArn, INACTIVE, ACTIVE, "starts")


@operation("DeleteRecommender", RecommenderArn)
def delete_recommender(req: RecommenderArn, ctx: Ctx) -> Body:
    """Its trainings go with it (a running one is stopped first: Personalize refuses to delete a
    recommender being created)."""
    RECOMMENDERS.get(ctx, req.recommenderArn)
    versions = versions_of(ctx, req.recommenderArn)
    if (busy := _busy(versions)) is not None and len(versions) == 1:
        raise ResourceInUseException(f"recommender {req.recommenderArn} is {busy['status']}; delete it once "
                                     "it is ACTIVE or CREATE FAILED")
    if busy is not None:
        raise ResourceInUseException(f"recommender {req.recommenderArn} is retraining; delete it once the "
                                     "training is done")
    for version in versions:
        ctx.resources.delete(version["recommenderVersionArn"])
        drop_artifact(ctx, version)
    ctx.resources.delete(req.recommenderArn)
    return {}


def due(recommender: Body, versions: list[Body], now: float, every_s: float = RETRAIN_S) -> bool:
    """Whether the scheduler retrains it now: ACTIVE, idle, its newest training every_s old.
    A failed retrain waits for the next period like a successful one."""
    if recommender["status"] != ACTIVE or not versions or _busy(versions) is not None:
        return False
    return newest_active(versions) is not None and now - versions[-1]["creationDateTime"] >= every_s
