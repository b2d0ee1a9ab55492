"""Recipes, their algorithms and feature transformations: ListRecipes, DescribeRecipe,
DescribeAlgorithm, DescribeFeatureTransformation.

They ship with the code (kernel/recipes.py), so every account sees the same ones; an
algorithm's defaults, ranges and which of them are tunable are the recipe's own
hyperparameters, the ones CreateSolution checks and training uses.
"""
from __future__ import annotations

from typing import Literal

from kernel.hpo import DEFAULT_TRIALS
from kernel.recipes import ALGORITHMS, RECIPES, TRANSFORMATIONS, Param, Recipe
from serving.control.base import Ctx, Page, Req, operation, paginate
from serving.control.store import Body
from serving.errors import ResourceNotFoundException
from serving.wire import Arn, Str256

EPOCH = 1_700_000_000.0  # their creationDateTime: they ship with the code
TRAINER_IMAGE = "openpersonalize-trainer"  # the Dockerfile's trainer target, which trains every recipe


class ListRecipes(Page):
    recipeProvider: Literal["SERVICE"] | None = None
    domain: Literal["ECOMMERCE", "VIDEO_ON_DEMAND"] | None = None


class RecipeArn(Req):
    recipeArn: Str256


class AlgorithmArn(Req):
    algorithmArn: Arn


class FeatureTransformationArn(Req):
    featureTransformationArn: Arn


def _recipe_body(r: Recipe) -> Body:
    body = {"name": r.name, "recipeArn": r.arn, "algorithmArn": r.algorithm_arn,
            "featureTransformationArn": r.transformation_arn, "status": "ACTIVE",
            "description": r.description, "recipeType": r.recipe_type, "creationDateTime": EPOCH,
            "lastUpdatedDateTime": EPOCH}
    return body | ({"domain": r.domain} if r.domain else {})


@operation("ListRecipes", ListRecipes)
def list_recipes(req: ListRecipes, ctx: Ctx) -> Body:
    """With a domain, that domain's use cases only (CreateRecommender's recipes), as Personalize
    lists them."""
    found = [_recipe_body(r) for r in RECIPES.values() if req.domain is None or r.domain == req.domain]
    return paginate(found, req, "recipes",
                    ("name", "recipeArn", "status", "creationDateTime", "lastUpdatedDateTime", "domain"))


@operation("DescribeRecipe", RecipeArn)
def describe_recipe(req: RecipeArn, ctx: Ctx) -> Body:
    if req.recipeArn not in RECIPES:
        raise ResourceNotFoundException(f"recipe {req.recipeArn} does not exist; ListRecipes shows ours")
    return {"recipe": _recipe_body(RECIPES[req.recipeArn])}


def _range(name: str, p: Param) -> tuple[str, Body]:
    """Which of DefaultHyperParameterRanges' lists the parameter goes in, and its entry."""
    if p.kind is bool:
        return "categoricalHyperParameterRanges", {"name": name, "values": ["true", "false"],
                                                   "isTunable": p.tunable}
    bounds = {k: p.kind(v) for k, v in (("minValue", p.low), ("maxValue", p.high)) if v is not None}
    kind = "integerHyperParameterRanges" if p.kind is int else "continuousHyperParameterRanges"
    return kind, {"name": name, **bounds, "isTunable": p.tunable}


@operation("DescribeAlgorithm", AlgorithmArn)
def describe_algorithm(req: AlgorithmArn, ctx: Ctx) -> Body:
    recipe = ALGORITHMS.get(req.algorithmArn)
    if recipe is None:
        raise ResourceNotFoundException(f"algorithm {req.algorithmArn} does not exist; DescribeRecipe names "
                                        "each recipe's")
    algorithm = {n: p for n, p in recipe.hyperparameters.items() if not p.featurization}
    ranges: dict[str, list[Body]] = {}
    for name, p in algorithm.items():
        kind, entry = _range(name, p)
        ranges.setdefault(kind, []).append(entry)
    return {"algorithm": {
        "name": recipe.name, "algorithmArn": recipe.algorithm_arn,
        "algorithmImage": {"name": recipe.model, "dockerURI": TRAINER_IMAGE},
        "defaultHyperParameters": {n: p.default for n, p in algorithm.items()},
        "defaultHyperParameterRanges": ranges, "trainingInputMode": "File",
        # what performHPO runs when hpoResourceConfig says nothing (kernel/hpo.py)
        "defaultResourceConfig": {"maxNumberOfTrainingJobs": str(DEFAULT_TRIALS),
                                  "maxParallelTrainingJobs": "1"},
        "creationDateTime": EPOCH, "lastUpdatedDateTime": EPOCH}}


@operation("DescribeFeatureTransformation", FeatureTransformationArn)
def describe_feature_transformation(req: FeatureTransformationArn, ctx: Ctx) -> Body:
    arn = req.featureTransformationArn
    if arn not in TRANSFORMATIONS:
        raise ResourceNotFoundException(f"feature transformation {arn} does not exist; DescribeRecipe names "
                                        "each recipe's")
    return {"featureTransformation": {
        "name": arn.rsplit("/", 1)[1], "featureTransformationArn": arn,
        "defaultParameters": TRANSFORMATIONS[arn], "status": "ACTIVE", "creationDateTime": EPOCH,
        "lastUpdatedDateTime": EPOCH}}
