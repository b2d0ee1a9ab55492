"""The recipes we serve, as Amazon Personalize names them, and their hyperparameters.

Shared by the control plane (ListRecipes, CreateSolution's checks) and the trainer (which
code trains which recipe), so it imports only the standard library. Hyperparameters
arrive as strings, as Personalize takes them; `check_hyperparameters` refuses unknown
names and bad values, naming them, and fills in the defaults.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

RECIPE_ARN_PREFIX = "arn:aws:personalize:::recipe/"
ALGORITHM_ARN_PREFIX = "arn:aws:personalize:::algorithm/"
TRANSFORMATION_ARN_PREFIX = "arn:aws:personalize:::feature-transformation/"


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, bool or str
    default: str
    low: float | None = None
    high: float | None = None
    tunable: bool = False  # what hyperparameter optimisation may search over (DescribeAlgorithm)
    featurization: bool = False  # filters the data before training: its feature transformation's

    def check(self, name: str, value: str) -> str:
        try:
            if self.kind is bool:
                if value.lower() not in ("true", "false"):
                    raise ValueError
                return value.lower()
            number = self.kind(value)
        except ValueError:
            raise ValueError(f"hyperparameter {name}={value!r} is not a {self.kind.__name__}") from None
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise ValueError(f"hyperparameter {name}={value!r} is outside [{self.low}, {self.high}]")
        return value


@dataclass(frozen=True)
class Recipe:
    name: str
    recipe_type: str  # USER_PERSONALIZATION, RELATED_ITEMS, PERSONALIZED_RANKING
    description: str
    hyperparameters: dict[str, Param] = field(default_factory=dict)
    supports_update: bool = False  # trainingMode UPDATE
    # a domain dataset group's use case (ECOMMERCE, VIDEO_ON_DEMAND) has one; custom recipes none
    domain: str | None = None
    model: Literal["hrnn", "sims", "popularity"] = "hrnn"  # what trains it and serves it
    learns_from_impressions: bool = False  # impressions train it (as negatives), not only filter
    explores: bool = False  # serving mixes in new items (campaignConfig.itemExplorationConfig)

    @property
    def segments_users(self) -> bool:
        """A USER_SEGMENTATION recipe: batch segment jobs give its answers, not campaigns."""
        return self.recipe_type == "USER_SEGMENTATION"

    @property
    def softmax_scores(self) -> bool:
        """Its scores are logits, normalised by a softmax (else counts or similarities, by their sum)."""
        return self.model == "hrnn"

    @property
    def arn(self) -> str:
        return RECIPE_ARN_PREFIX + self.name

    @property
    def algorithm_arn(self) -> str:
        return ALGORITHM_ARN_PREFIX + self.name

    @property
    def transformation(self) -> str:
        """Its feature transformation's name: how its training data is filtered."""
        return "sims" if self.model == "sims" else "JSON-percentile-filtering"

    @property
    def transformation_arn(self) -> str:
        return TRANSFORMATION_ARN_PREFIX + self.transformation


_HRNN = {
    "hidden_dimension": Param(int, "149", 32, 256, tunable=True),
    "bptt": Param(int, "32", 2, 64, tunable=True),
    "recency_mask": Param(bool, "true", tunable=True),
    "min_user_history_length_percentile": Param(float, "0.0", 0.0, 0.1, featurization=True),
    "max_user_history_length_percentile": Param(float, "0.99", 0.9, 1.0, featurization=True),
    "max_user_history_length": Param(int, "200", 2, 10_000),
    # training knobs of ours (Personalize tunes these itself)
    "epochs": Param(int, "0", 0, 200),  # 0 = the recipe's default for the data size
    # Adam's peak, cosine to 10% (UPDATE: 0.002)
    "learning_rate": Param(float, "0.01", 1e-6, 1.0, tunable=True),
    "dropout": Param(float, "0.2", 0.0, 0.9, tunable=True),  # on item embeddings and on the state scored
    "session_gap_seconds": Param(float, "1800", 1, 10**8),
}
_EXPLORATION = {"exploration_weight": Param(float, "0.3", 0.0, 1.0),
                "exploration_item_age_cut_off": Param(float, "30", 1, 10_000)}

RECIPES: dict[str, Recipe] = {r.arn: r for r in (
    Recipe("aws-hrnn", "USER_PERSONALIZATION",
           "Hierarchical GRU over the user's sessions (Quadrana et al. 2017): the current session, "
           "seeded by a user-level GRU over past sessions, predicts the next item.",
           _HRNN, supports_update=True),
    Recipe("aws-user-personalization", "USER_PERSONALIZATION",
           "HRNN plus impressions as negatives and exploration of new items at serving time.",
           _HRNN | _EXPLORATION, supports_update=True, learns_from_impressions=True, explores=True),
    Recipe("aws-popularity-count", "USER_PERSONALIZATION",
           "The most interacted-with items (optionally of one event type): the baseline.", {},
           model="popularity"),
    Recipe("aws-sims", "RELATED_ITEMS",
           "Items that co-occur in users' histories, with popular neighbours discounted.", {
               "popularity_discount_factor": Param(float, "0.5", 0.0, 1.0, tunable=True),
               "min_cointeraction_count": Param(int, "3", 0, 10, tunable=True),
               "min_user_history_length_percentile": Param(float, "0.005", 0.0, 0.1, featurization=True),
               "max_user_history_length_percentile": Param(float, "0.995", 0.9, 1.0, featurization=True),
               "min_item_interaction_count_percentile": Param(float, "0.01", 0.0, 0.1, featurization=True),
               # Personalize documents 0.9, which drops the most-used items; ours keeps them
               # (why, measured: docs/training.md)
               "max_item_interaction_count_percentile": Param(float, "1.0", 0.5, 1.0, featurization=True)},
           model="sims"),
    Recipe("aws-personalized-ranking", "PERSONALIZED_RANKING",
           "The HRNN model, scoring a given list of items for a user.", _HRNN, supports_update=True),
    Recipe("aws-item-affinity", "USER_SEGMENTATION",
           "The users most likely to interact with each item (batch segment jobs): the HRNN's "
           "probability of the item as each user's next, read the other way.", _HRNN),
    Recipe("aws-item-attribute-affinity", "USER_SEGMENTATION",
           "The users most likely to interact with items of given attributes (ITEMS.GENRES = \"Comedy\"): "
           "the HRNN's probability that each user's next item is one of them.", _HRNN),
)}

BY_NAME = {r.name: r for r in RECIPES.values()}
ALGORITHMS = {r.algorithm_arn: r for r in RECIPES.values()}
# a feature transformation -> its default parameters: the featurization hyperparameters of the
# recipes that use it (they agree: each transformation's recipes share them)
TRANSFORMATIONS: dict[str, dict[str, str]] = {}
for _r in RECIPES.values():
    TRANSFORMATIONS.setdefault(_r.transformation_arn, {}).update(
        {n: p.default for n, p in _r.hyperparameters.items() if p.featurization})


def recipe_named(name: str) -> Recipe:
    """The recipe an artifact's manifest names (always one of ours: the trainer wrote it)."""
    return BY_NAME[name]


def check_hyperparameters(recipe: Recipe, given: dict[str, str]) -> dict[str, str]:
    """Every hyperparameter of the recipe: the given ones, checked, and the defaults."""
    unknown = sorted(set(given) - set(recipe.hyperparameters))
    if unknown:
        raise ValueError(f"hyperparameter {unknown[0]} is not one of {recipe.name}'s: "
                         f"{', '.join(sorted(recipe.hyperparameters)) or 'none'}")
    return {name: p.check(name, given[name]) if name in given else p.default
            for name, p in recipe.hyperparameters.items()}


def solution_hyperparameters(recipe: Recipe, config: dict[str, dict[str, str]]) -> dict[str, str]:
    """Every hyperparameter a solution trains with, from its solutionConfig: the algorithm's
    (`algorithmHyperParameters`, which takes the featurization ones too) and the feature
    transformation's (`featureTransformationParameters`, only those)."""
    featurization = config.get("featureTransformationParameters") or {}
    names = sorted(n for n, p in recipe.hyperparameters.items() if p.featurization)
    if other := sorted(set(featurization) - set(names)):
        raise ValueError(f"featureTransformationParameters: {other[0]} is not one of "
                         f"{recipe.transformation}'s: {', '.join(names) or 'none'}")
    return check_hyperparameters(recipe, {**featurization, **(config.get("algorithmHyperParameters") or {})})


_RATE = re.compile(r"rate\((\d+) (minute|hour|day)s?\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_seconds(expression: str) -> int:
    """autoTrainingConfig.schedulingExpression -> seconds between FULL retrains.

    Personalize takes `rate(N days)` (1..30); we also take hours and minutes (for tests)."""
    m = _RATE.fullmatch(expression.strip())
    if not m or int(m.group(1)) < 1 or (m.group(2) == "day" and int(m.group(1)) > 30):
        raise ValueError(f"{expression!r} is not a schedule like rate(7 days) (1 to 30 days)")
    return int(m.group(1)) * _UNIT_S[m.group(2)]
