"""The control plane's training side: recipes, solutions, solution versions and metrics.

CreateSolutionVersion stores a CREATE PENDING job; serving.jobs runs it with training's
`Trainer` (handed in by the composition root: serving never imports training), which
writes an artifact directory and returns the version's metrics.
"""
from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

from pydantic import StringConstraints

from kernel.artifact_store import ArtifactError, ArtifactStore, artifact_location
from kernel.contract import dataset_group_name
from kernel.hpo import automl_of, search_of
from kernel.recipes import RECIPES, Recipe, schedule_seconds, solution_hyperparameters
from serving.control.base import (
    Ctx,
    Family,
    ListByDatasetGroup,
    Name,
    Page,
    Req,
    Tag,
    Tags,
    children,
    given,
    group_schema,
    operation,
    register,
)
from serving.control.groups import GROUPS
from serving.control.ports import Trainer
from serving.control.store import Body
from serving.errors import (
    InvalidInputException,
    ResourceInUseException,
)
from serving.jobs import ACTIVE, PENDING, RUNNING, STOPPING, JobFailed, Progress
from serving.wire import Arn, Str256, Str1000

# what training measures beyond Personalize's metrics: DescribeSolutionVersion and the report
# show them, GetSolutionMetrics answers with Personalize's names only
REPORT_ONLY_METRICS = frozenset({"hit_rate_at_10", "coverage_at_10"})
log = logging.getLogger(__name__)


class AutoTrainingConfig(Req):
    schedulingExpression: Annotated[str, StringConstraints(min_length=1, max_length=16)] | None = None


class SolutionConfig(Req):
    eventValueThreshold: Str256 | None = None
    hpoConfig: dict[str, Any] | None = None
    algorithmHyperParameters: dict[str, Str1000] | None = None
    featureTransformationParameters: dict[str, Str1000] | None = None
    autoMLConfig: dict[str, Any] | None = None
    eventsConfig: dict[str, Any] | None = None
    optimizationObjective: dict[str, Any] | None = None
    trainingDataConfig: dict[str, Any] | None = None
    autoTrainingConfig: AutoTrainingConfig | None = None


class CreateSolution(Req):
    name: Name
    performHPO: bool | None = None
    performAutoML: bool | None = None
    performAutoTraining: bool | None = None
    performIncrementalUpdate: bool | None = None
    recipeArn: Str256 | None = None
    datasetGroupArn: Arn
    eventType: Str256 | None = None
    solutionConfig: SolutionConfig | None = None
    tags: Tags | None = None


class SolutionArn(Req):
    solutionArn: Arn


class SolutionUpdateConfig(Req):
    autoTrainingConfig: AutoTrainingConfig | None = None
    eventsConfig: dict[str, Any] | None = None


class UpdateSolution(Req):
    solutionArn: Arn
    performAutoTraining: bool | None = None
    performIncrementalUpdate: bool | None = None
    solutionUpdateConfig: SolutionUpdateConfig | None = None


class CreateSolutionVersion(Req):
    name: Name | None = None
    solutionArn: Arn
    trainingMode: Literal["FULL", "UPDATE", "AUTOTRAIN"] | None = None
    tags: Tags | None = None


class SolutionVersionArn(Req):
    solutionVersionArn: Arn


class ListBySolution(Page):
    solutionArn: Arn | None = None


def _with_latest_version(ctx: Ctx, solution: Body) -> Body:
    if versions := _versions(ctx, solution["solutionArn"]):
        v = versions[-1]
        solution["latestSolutionVersion"] = {k: v[k] for k in (
            "solutionVersionArn", "status", "trainingMode", "trainingType", "creationDateTime",
            "lastUpdatedDateTime", "failureReason") if k in v}
    return solution


def _versions(ctx: Ctx, solution_arn: str) -> list[Body]:
    return ctx.resources.list(VERSIONS.kind, solution_arn)


SOLUTIONS = register(Family("solution", SolutionArn, ListByDatasetGroup, (
    "name", "solutionArn", "status", "creationDateTime", "lastUpdatedDateTime", "recipeArn"),
    parent="datasetGroupArn", described=_with_latest_version))
VERSIONS = register(Family("solution-version", SolutionVersionArn, ListBySolution, (
    "solutionVersionArn", "status", "trainingMode", "trainingType", "creationDateTime", "lastUpdatedDateTime",
    "failureReason"), parent="solutionArn"))


# ---- solutions ----

def _schedule(config: AutoTrainingConfig | None) -> None:
    if config is not None and config.schedulingExpression is not None:
        try:
            schedule_seconds(config.schedulingExpression)
        except ValueError as exc:
            raise InvalidInputException(f"autoTrainingConfig.schedulingExpression: {exc}") from None


def _recipe(arn: str | None) -> Recipe:
    if arn is None:
        raise InvalidInputException("recipeArn is required (or performAutoML with an autoMLConfig)")
    if arn not in RECIPES:
        raise InvalidInputException(f"recipeArn {arn} is not a recipe we serve: {', '.join(RECIPES)}")
    if RECIPES[arn].use_case:
        raise InvalidInputException(f"recipeArn {arn} is a {RECIPES[arn].domain} use case: CreateRecommender "
                                    "takes it, in a domain dataset group")
    return RECIPES[arn]


def _automl(req: CreateSolution, config: SolutionConfig) -> None:
    """AutoML chooses the recipe when a version trains, each candidate with its defaults."""
    if req.recipeArn is not None:
        raise InvalidInputException("performAutoML chooses the recipe: leave out recipeArn")
    if config.algorithmHyperParameters or config.featureTransformationParameters or req.performHPO:
        raise InvalidInputException("performAutoML compares recipes with their defaults: leave out "
                                    "performHPO, algorithmHyperParameters, featureTransformationParameters")
    try:
        automl_of(config.autoMLConfig)
    except ValueError as exc:
        raise InvalidInputException(f"solutionConfig: {exc}") from None


@operation("CreateSolution", CreateSolution)
def create_solution(req: CreateSolution, ctx: Ctx) -> Body:
    SOLUTIONS.within_quota(ctx)
    GROUPS.get(ctx, req.datasetGroupArn)
    config = req.solutionConfig or SolutionConfig()
    recipe = None if req.performAutoML else _recipe(req.recipeArn)
    if recipe is None:
        _automl(req, config)
    try:
        if recipe is not None:
            solution_hyperparameters(recipe, config.model_dump(exclude_none=True))
        if req.performHPO and recipe is not None:
            search_of(recipe, config.hpoConfig)
        if config.eventValueThreshold is not None:
            float(config.eventValueThreshold)
    except ValueError as exc:
        raise InvalidInputException(f"solutionConfig: {exc}") from None
    _schedule(config.autoTrainingConfig)
    arn = ctx.arn(SOLUTIONS.kind, req.name)
    body = {"name": req.name, "solutionArn": arn, "datasetGroupArn": req.datasetGroupArn, "status": ACTIVE,
            "performHPO": bool(req.performHPO), "performAutoML": bool(req.performAutoML),
            "performAutoTraining": bool(req.performAutoTraining),
            "performIncrementalUpdate": bool(req.performIncrementalUpdate),
            "solutionConfig": config.model_dump(exclude_none=True)}
    if recipe is not None:
        body["recipeArn"] = recipe.arn
    if req.eventType:
        body["eventType"] = req.eventType
    SOLUTIONS.add(ctx, arn, req.name, body, parent=req.datasetGroupArn, tags=req.tags)
    return {"solutionArn": arn}


@operation("UpdateSolution", UpdateSolution)
def update_solution(req: UpdateSolution, ctx: Ctx) -> Body:
    body = SOLUTIONS.get(ctx, req.solutionArn)
    changes = given(req, "performAutoTraining", "performIncrementalUpdate")
    if req.solutionUpdateConfig and req.solutionUpdateConfig.autoTrainingConfig:
        auto = req.solutionUpdateConfig.autoTrainingConfig
        _schedule(auto)
        changes["solutionConfig"] = {**body.get("solutionConfig", {}),
                                     "autoTrainingConfig": auto.model_dump(exclude_none=True)}
    ctx.resources.update(req.solutionArn, changes)
    return {"solutionArn": req.solutionArn}


@operation("DeleteSolution", SolutionArn)
def delete_solution(req: SolutionArn, ctx: Ctx) -> Body:
    SOLUTIONS.get(ctx, req.solutionArn)
    versions = _versions(ctx, req.solutionArn)
    if any(v["status"] in (PENDING, RUNNING, STOPPING) for v in versions):
        raise ResourceInUseException(f"solution {req.solutionArn} has a version in training; stop it first")
    if ctx.resources.count_children(req.solutionArn, "campaign"):
        raise ResourceInUseException(f"solution {req.solutionArn} is deployed in a campaign; delete it first")
    jobs = [(f, job) for v in versions for f, job in children(ctx, v["solutionVersionArn"])]
    if busy := [job for f, job in jobs if job["status"] in (PENDING, RUNNING)]:
        raise ResourceInUseException(f"solution {req.solutionArn} has a job in progress on a version of it: "
                                     f"{busy[0].get('jobName')}")
    for f, job in jobs:
        ctx.resources.delete(job[f.key + "Arn"])
    for v in versions:
        ctx.resources.delete(v["solutionVersionArn"])
        drop_artifact(ctx, v)
    ctx.resources.delete(req.solutionArn)
    return {}


def trained_arn(version: Body) -> str:
    """The ARN a training's artifact and model go by: a solution version's, or a recommender's
    training's (serving.control.recommenders), which the same work trains."""
    return version.get("solutionVersionArn") or version["recommenderVersionArn"]


def drop_artifact(ctx: Ctx, version: Body) -> None:
    """A deleted version's files: its model and the ids and histories of the users it was trained
    on (at the trainer's location `artifacts/<solution>/<version id>`, in the data dir or the
    bucket, its local cache, or what a crash left staged)."""
    store = ctx.models.artifacts if ctx.models else ArtifactStore.of(ctx.settings)
    try:
        store.delete(artifact_location(trained_arn(version)))
    except ArtifactError as exc:  # the store is down: the resource is gone; its objects stay behind
        log.warning("solution version %s deleted; its artifact was not: %s",
                    trained_arn(version), exc)


# ---- solution versions ----

def latest_active(ctx: Ctx, solution_arn: str) -> Body | None:
    return next((v for v in reversed(_versions(ctx, solution_arn)) if v["status"] == ACTIVE), None)


def start_version(ctx: Ctx, solution: Body, mode: str, *, training_type: str = "MANUAL",
                  name: str | None = None, tags: list[Tag] | None = None) -> str:
    """Store a pending version (CreateSolutionVersion, or the scheduler); returns its ARN."""
    solution_arn = solution["solutionArn"]
    if any(v["status"] in (PENDING, RUNNING, STOPPING) for v in _versions(ctx, solution_arn)):
        raise ResourceInUseException(f"solution {solution_arn} already has a version in training")
    parent = None
    if mode == "UPDATE":
        parent = latest_active(ctx, solution_arn)
        recipe = solution.get("recipeArn") or (parent or {}).get("recipeArn")  # AutoML's: its parent's
        if recipe is not None and not RECIPES[recipe].supports_update:
            raise InvalidInputException(f"trainingMode UPDATE is not available for {recipe}; use FULL")
        if parent is None:
            raise InvalidInputException(f"trainingMode UPDATE needs an ACTIVE solution version of "
                                        f"{solution_arn} to start from; create a FULL one first")
    version_id = uuid.uuid4().hex[:8]
    arn = f"{solution_arn}/{version_id}"
    body = {"name": name or version_id, "solutionVersionArn": arn, "solutionArn": solution_arn,
            "status": PENDING, "trainingMode": mode, "trainingType": training_type} | {
        k: solution[k] for k in ("performHPO", "performAutoML", "performIncrementalUpdate", "recipeArn",
                                 "eventType", "datasetGroupArn", "solutionConfig") if k in solution}
    if parent is not None:  # it goes on with its parent's recipe (AutoML's choice, too)
        body |= {"parentSolutionVersionArn": parent["solutionVersionArn"], "recipeArn": parent["recipeArn"]}
    VERSIONS.add(ctx, arn, body["name"], body, parent=solution_arn, tags=tags)
    ctx.wake_jobs()
    return arn


@operation("CreateSolutionVersion", CreateSolutionVersion)
def create_solution_version(req: CreateSolutionVersion, ctx: Ctx) -> Body:
    solution = SOLUTIONS.get(ctx, req.solutionArn)
    if req.trainingMode == "AUTOTRAIN":
        raise InvalidInputException("trainingMode AUTOTRAIN is set by automatic training; use FULL or UPDATE")
    return {"solutionVersionArn": start_version(ctx, solution, req.trainingMode or "FULL", name=req.name,
                                                     tags=req.tags)}


@operation("StopSolutionVersionCreation", SolutionVersionArn)
def stop_solution_version(req: SolutionVersionArn, ctx: Ctx) -> Body:
    version = VERSIONS.get(ctx, req.solutionVersionArn)
    if ctx.resources.transition(req.solutionVersionArn, PENDING, {"status": "CREATE STOPPED"}) is None and \
            ctx.resources.transition(req.solutionVersionArn, RUNNING, {"status": STOPPING}) is None:
        raise ResourceInUseException(f"solution version {req.solutionVersionArn} is {version['status']}; "
                                     "only a pending or training version can be stopped")
    return {}


@operation("GetSolutionMetrics", SolutionVersionArn)
def get_solution_metrics(req: SolutionVersionArn, ctx: Ctx) -> Body:
    version = VERSIONS.get(ctx, req.solutionVersionArn)
    if version["status"] != ACTIVE:
        raise ResourceInUseException(f"solution version {req.solutionVersionArn} is {version['status']}; "
                                     "metrics come with ACTIVE")
    metrics = {k: v for k, v in version.get("metrics", {}).items() if k not in REPORT_ONLY_METRICS}
    return {"solutionVersionArn": req.solutionVersionArn, "metrics": metrics}


# ---- the work the job runner calls (in a thread) ----

def run_training(ctx: Ctx, trainer: Trainer, job: Body, progress: Progress) -> Body:
    config = job.get("solutionConfig", {})
    parent = None
    if parent_arn := job.get("parentSolutionVersionArn"):
        parent = (ctx.resources.get(parent_arn, "solution-version") or {}).get("artifact")
        if parent is None:
            raise JobFailed(f"the parent version {parent_arn} is gone")
    recipe = RECIPES.get(job.get("recipeArn", ""))  # None: AutoML chooses it now
    threshold = config.get("eventValueThreshold")
    params = solution_hyperparameters(recipe, config) if recipe else {}
    group = dataset_group_name(job["datasetGroupArn"])
    items = group_schema(ctx.resources, group, "ITEMS")
    try:
        out = trainer.train(
            version_arn=trained_arn(job), dataset_group=group,
            recipe_arn=recipe.arn if recipe else None, hyperparameters=params,
            event_type=job.get("eventType"),
            event_value_threshold=float(threshold) if threshold else None, parent=parent, progress=progress,
            search=config.get("hpoConfig", {}) if job.get("performHPO") else None,
            automl=config.get("autoMLConfig", {}) if recipe is None else None,
            excluded=config.get("trainingDataConfig", {}).get("excludedDatasetColumns"),
            textual=next((c.name for c in items.columns if c.textual), None) if items else None)
    except (ValueError, ArtifactError) as exc:  # too little data, a parent's artifact gone: say so
        raise JobFailed(str(exc)) from None
    if recipe is None:
        recipe = RECIPES[out["recipeArn"]]
        ctx.resources.update(job["solutionArn"], {"autoMLResult": out["autoMLResult"]})
    used = {k: v for k, v in out.get("hyperparametersUsed", {}).items() if k in recipe.hyperparameters}
    chosen = out.pop("hyperparametersChosen", {})
    return {**out, "tunedHPOParams": {"algorithmHyperParameters": params | chosen | used}}

