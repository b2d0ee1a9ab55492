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


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, bool or str
    default: str
    low: float | None = None
    high: float | None = None

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
    def softmax_scores(self) -> bool:
        """Its scores are logits, normalised by a softmax (else counts or similarities, by their sum)."""
        return self.model == "hrnn"

    @property
    def arn(self) -> str:
        return RECIPE_ARN_PREFIX + self.name


_HRNN = {
    "hidden_dimension": Param(int, "149", 32, 256),
    "bptt": Param(int, "32", 2, 64),
    "recency_mask": Param(bool, "true"),
    "min_user_history_length_percentile": Param(float, "0.0", 0.0, 0.1),
    "max_user_history_length_percentile": Param(float, "0.99", 0.9, 1.0),
    "max_user_history_length": Param(int, "200", 2, 10_000),
    # training knobs of ours (Personalize tunes these itself)
    "epochs": Param(int, "0", 0, 200),  # 0 = the recipe's default for the data size
    "learning_rate": Param(float, "0.01", 1e-6, 1.0),  # Adam's peak, cosine to 10% (UPDATE: 0.002)
    "dropout": Param(float, "0.2", 0.0, 0.9),  # on item embeddings and on the state scored
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
               "popularity_discount_factor": Param(float, "0.5", 0.0, 1.0),
               "min_cointeraction_count": Param(int, "3", 0, 10),
               "min_user_history_length_percentile": Param(float, "0.005", 0.0, 0.1),
               "max_user_history_length_percentile": Param(float, "0.995", 0.9, 1.0),
               "min_item_interaction_count_percentile": Param(float, "0.01", 0.0, 0.1),
               # Personalize documents 0.9, which drops the most-used items; ours keeps them
               # (why, measured: docs/training.md)
               "max_item_interaction_count_percentile": Param(float, "1.0", 0.5, 1.0)}, model="sims"),
    Recipe("aws-personalized-ranking", "PERSONALIZED_RANKING",
           "The HRNN model, scoring a given list of items for a user.", _HRNN, supports_update=True),
)}

BY_NAME = {r.name: r for r in RECIPES.values()}


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


_RATE = re.compile(r"rate\((\d+) (minute|hour|day)s?\)")
_UNIT_S = {"minute": 60, "hour": 3600, "day": 86400}


def schedule_seconds(expression: str) -> int:
    """autoTrainingConfig.schedulingExpression -> seconds between FULL retrains.

    Personalize takes `rate(N days)` (1..30); we also take hours and minutes (for tests)."""
    m = _RATE.fullmatch(expression.strip())
    if not m or int(m.group(1)) < 1 or (m.group(2) == "day" and int(m.group(1)) > 30):
        raise ValueError(f"{expression!r} is not a schedule like rate(7 days) (1 to 30 days)")
    return int(m.group(1)) * _UNIT_S[m.group(2)]
