"""Hyperparameter optimisation as Personalize's `solutionConfig.hpoConfig` describes it (what is
searched, the objective, how many trials), and AutoML's choice of a recipe (`autoMLConfig`).
Pure: the control plane checks a config with it when a solution is created, the trainer
searches with it.

A search samples each trial's hyperparameters at random (seeded by the solution version, so a
re-run searches the same points) from the ranges the config gives, or, for the recipe's other
tunable hyperparameters, from the recipe's own (DescribeAlgorithm's). The first trial is the
recipe's defaults (the middle of a given range that leaves a default out), so the best trial is
never worse on the objective than the defaults.
"""
from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernel.recipes import RECIPES, Param, Recipe

# what training measures (training.metrics), by Personalize's names
OBJECTIVES = ("coverage", "mean_reciprocal_rank_at_25", "normalized_discounted_cumulative_gain_at_5",
              "normalized_discounted_cumulative_gain_at_10", "normalized_discounted_cumulative_gain_at_25",
              "precision_at_5", "precision_at_10", "precision_at_25")
DEFAULT_OBJECTIVE = "normalized_discounted_cumulative_gain_at_10"
DEFAULT_TRIALS, MAX_TRIALS = 5, 50  # Personalize allows up to 50 training jobs a search


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter's search space: numbers in [low, high] (integers where `integer`),
    or one of `values`."""
    name: str
    low: float = 0.0
    high: float = 0.0
    integer: bool = False
    values: tuple[str, ...] = ()

    def start(self, default: str) -> str:
        """The first trial's value: the default where the space holds it, else its middle."""
        if self.values:
            return default if default in self.values else self.values[0]
        if self.low <= float(default) <= self.high:
            return default
        middle = (self.low + self.high) / 2
        return str(round(middle)) if self.integer else f"{middle:.6g}"

    def sample(self, rng: random.Random) -> str:
        if self.values:
            return rng.choice(self.values)
        if self.integer:
            return str(rng.randint(int(self.low), int(self.high)))
        if self.low > 0 and self.high / self.low >= 100:  # rates and the like: evenly in log space
            return f"{math.exp(rng.uniform(math.log(self.low), math.log(self.high))):.6g}"
        return f"{rng.uniform(self.low, self.high):.6g}"


@dataclass(frozen=True)
class Search:
    dimensions: tuple[Dimension, ...]
    objective: str
    maximize: bool
    trials: int
    parallel: int

    def points(self, defaults: Mapping[str, str], seed: str) -> list[dict[str, str]]:
        """Each trial's hyperparameters: the defaults first, then random points."""
        rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
        points = [{**defaults, **{d.name: d.start(defaults[d.name]) for d in self.dimensions}}]
        while len(points) < self.trials:
            points.append({**defaults, **{d.name: d.sample(rng) for d in self.dimensions}})
        return points

    def better(self, a: float, b: float) -> bool:
        """Whether objective value `a` beats `b`."""
        return a > b if self.maximize else a < b


def _own(name: str, p: Param) -> Dimension:
    if p.kind is bool:
        return Dimension(name, values=("true", "false"))
    return Dimension(name, float(p.low or 0), float(p.high or 0), integer=p.kind is int)


def _given(recipe: Recipe, kind: str, given: Mapping[str, Any]) -> Dimension:
    name = str(given.get("name", ""))
    p = recipe.hyperparameters.get(name)
    if p is None or not p.tunable:
        tunable = ", ".join(n for n, q in recipe.hyperparameters.items() if q.tunable) or "none"
        raise ValueError(f"{kind}: {name!r} is not a tunable hyperparameter of {recipe.name} ({tunable})")
    if kind == "categoricalHyperParameterRanges":
        values = tuple(str(v) for v in given.get("values") or ())
        for v in values:
            p.check(name, v)
        if not values:
            raise ValueError(f"{kind}: {name} needs values")
        return Dimension(name, values=values)
    try:
        low, high = float(given["minValue"]), float(given["maxValue"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{kind}: {name} needs a numeric minValue and maxValue") from None
    if (p.kind is int) != (kind == "integerHyperParameterRanges") or p.kind is bool:
        raise ValueError(f"{kind}: {name} is a {p.kind.__name__} hyperparameter")
    for v in (low, high):
        p.check(name, str(int(v)) if p.kind is int else str(v))
    if low > high:
        raise ValueError(f"{kind}: {name}'s minValue is above its maxValue")
    return Dimension(name, low, high, integer=p.kind is int)


def search_of(recipe: Recipe, config: Mapping[str, Any] | None) -> Search:
    """The search an hpoConfig asks for; ValueError naming what Personalize would refuse."""
    config = config or {}
    ranges = config.get("algorithmHyperParameterRanges") or {}
    given = {d.name: d for kind in ("integerHyperParameterRanges", "continuousHyperParameterRanges",
                                    "categoricalHyperParameterRanges")
             for d in (_given(recipe, kind, r) for r in ranges.get(kind) or ())}
    own = {n: _own(n, p) for n, p in recipe.hyperparameters.items() if p.tunable and n not in given}
    if not given and not own:
        raise ValueError(f"{recipe.name} has no tunable hyperparameters: performHPO has nothing to search")
    objective = config.get("hpoObjective") or {}
    metric = objective.get("metricName") or DEFAULT_OBJECTIVE
    if metric not in OBJECTIVES:
        raise ValueError(f"hpoObjective.metricName {metric!r} is not one of {', '.join(OBJECTIVES)}")
    kind = objective.get("type") or "Maximize"
    if kind not in ("Maximize", "Minimize"):
        raise ValueError("hpoObjective.type must be Maximize or Minimize")
    resources = config.get("hpoResourceConfig") or {}
    try:
        trials = int(resources.get("maxNumberOfTrainingJobs") or DEFAULT_TRIALS)
        parallel = int(resources.get("maxParallelTrainingJobs") or 1)
    except ValueError:
        raise ValueError("hpoResourceConfig: maxNumberOfTrainingJobs and maxParallelTrainingJobs are "
                         "whole numbers") from None
    if not 1 <= trials <= MAX_TRIALS or not 1 <= parallel <= trials:
        raise ValueError(f"hpoResourceConfig: 1 <= maxParallelTrainingJobs <= maxNumberOfTrainingJobs <= "
                         f"{MAX_TRIALS}")
    return Search((*given.values(), *own.values()), metric, kind == "Maximize", trials, parallel)


@dataclass(frozen=True)
class AutoML:
    """The recipes AutoML chooses among and the metric it chooses by (the higher, the better)."""
    recipes: tuple[Recipe, ...]
    objective: str


def automl_of(config: Mapping[str, Any] | None) -> AutoML:
    """The choice an autoMLConfig asks for: its recipeList (by default every USER_PERSONALIZATION
    custom recipe of ours) and metricName; ValueError naming what does not fit."""
    config = config or {}
    personal = [r.arn for r in RECIPES.values() if r.recipe_type == "USER_PERSONALIZATION" and not r.use_case]
    arns = config.get("recipeList") or personal
    for arn in arns:
        if arn not in personal:
            raise ValueError(f"autoMLConfig.recipeList: {arn} is not a USER_PERSONALIZATION recipe of ours")
    metric = config.get("metricName") or DEFAULT_OBJECTIVE
    if metric not in OBJECTIVES:
        raise ValueError(f"autoMLConfig.metricName {metric!r} is not one of {', '.join(OBJECTIVES)}")
    return AutoML(tuple(RECIPES[a] for a in dict.fromkeys(arns)), metric)
