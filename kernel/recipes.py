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
    choices: tuple[str, ...] = ()  # a str parameter's allowed values

    def check(self, name: str, value: str) -> str:
        if self.choices:
            if value not in self.choices:
                raise ValueError(f"hyperparameter {name}={value!r} is not one of {', '.join(self.choices)}")
            return value
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
    recipe_type: str  # USER_PERSONALIZATION, RELATED_ITEMS, PERSONALIZED_RANKING, PERSONALIZED_ACTIONS, ...
    description: str
    hyperparameters: dict[str, Param] = field(default_factory=dict)
    supports_update: bool = False  # trainingMode UPDATE
    # a domain dataset group's use case (ECOMMERCE, VIDEO_ON_DEMAND) has one; custom recipes none
    domain: str | None = None
    model: Literal["hrnn", "sims", "popularity", "trending", "similar_items", "bought_together",
                   "next_best_action"] = "hrnn"
    learns_from_impressions: bool = False  # impressions train it (as negatives), not only filter
    explores: bool = False  # serving mixes in new items (campaignConfig.itemExplorationConfig)
    metadata: bool = False  # it learns the ITEMS dataset's fields too: an item nobody used is served
    # it learns the INTERACTIONS dataset's categorical fields (DEVICE, ...) as the context of each
    # event, which a request's `context` gives at serving time
    context: bool = False
    # a use case: the event types it learns from (none: all), the one whose items of the user's
    # own it never recommends, whether it needs the ITEMS dataset, and what a request must name
    event_types: tuple[str, ...] = ()
    drops_own: str | None = None
    needs_items: bool = False
    needs_user: bool = True

    @property
    def use_case(self) -> bool:
        """A domain use case, which a recommender serves (CreateRecommender), not a solution."""
        return self.domain is not None

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
        return {"sims": "sims", "trending": "trending-now", "next_best_action": "next-best-action"}.get(
            self.model, "JSON-percentile-filtering")

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
TREND_FREQUENCIES = {"30 mins": 1800, "1 hour": 3600, "3 hours": 10800, "1 day": 86400}
_TRENDING = {"trend_discovery_frequency": Param(str, "1 hour", featurization=True,
                                                choices=tuple(TREND_FREQUENCIES))}
# metadata_weight: chosen on ml-latest-small, the bundled data with metadata (docs/benchmarks.md)
_SIMILAR = {"metadata_weight": Param(float, "0.1", 0.0, 1.0, tunable=True),
            "popularity_discount_factor": Param(float, "0.5", 0.0, 1.0, tunable=True)}
_BOUGHT = {"popularity_discount_factor": Param(float, "0.5", 0.0, 1.0)}
# Personalize's only one (its docs: default 14, [7, 28], not HPO tunable): a TAKEN that follows a
# NOT_TAKEN or VIEWED of the action within this many days makes it no refusal
_NEXT_BEST_ACTION = {"action_optimization_period": Param(int, "14", 7, 28, featurization=True)}


def _use_case(name: str, domain: str, kind: str, description: str, model: str, *,
              event_types: tuple[str, ...] = (), drops_own: str | None = None, needs_items: bool = False,
              needs_user: bool = True) -> Recipe:
    """A domain use case: the model of one of the custom recipes below, with its defaults (a
    recommender takes no hyperparameters), trained on the use case's event types."""
    params = {"hrnn": _HRNN | _EXPLORATION, "trending": _TRENDING, "similar_items": _SIMILAR,
              "bought_together": _BOUGHT}.get(model, {})
    return Recipe(name, kind, description, params, domain=domain, model=model,  # type: ignore[arg-type]
                  learns_from_impressions=model == "hrnn", explores=model == "hrnn",
                  event_types=event_types, drops_own=drops_own, needs_items=needs_items,
                  needs_user=needs_user, metadata=model == "similar_items")


VOD, ECOMMERCE = "VIDEO_ON_DEMAND", "ECOMMERCE"

RECIPES: dict[str, Recipe] = {r.arn: r for r in (
    Recipe("aws-hrnn", "USER_PERSONALIZATION",
           "Hierarchical GRU over the user's sessions (Quadrana et al. 2017): the current session, "
           "seeded by a user-level GRU over past sessions, predicts the next item.",
           _HRNN, supports_update=True),
    Recipe("aws-user-personalization", "USER_PERSONALIZATION",
           "HRNN plus impressions as negatives and exploration of new items at serving time.",
           _HRNN | _EXPLORATION, supports_update=True, learns_from_impressions=True, explores=True),
    Recipe("aws-user-personalization-v2", "USER_PERSONALIZATION",
           "aws-user-personalization with the items' metadata (categories, numbers) in their embeddings: "
           "items nobody has interacted with yet are recommended from their metadata.",
           _HRNN | _EXPLORATION, supports_update=True, learns_from_impressions=True, explores=True,
           metadata=True, context=True),
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
    Recipe("aws-personalized-ranking-v2", "PERSONALIZED_RANKING",
           "aws-personalized-ranking with the items' metadata in their embeddings.", _HRNN,
           supports_update=True, metadata=True, context=True),
    Recipe("aws-item-affinity", "USER_SEGMENTATION",
           "The users most likely to interact with each item (batch segment jobs): the HRNN's "
           "probability of the item as each user's next, read the other way.", _HRNN),
    Recipe("aws-item-attribute-affinity", "USER_SEGMENTATION",
           "The users most likely to interact with items of given attributes (ITEMS.GENRES = \"Comedy\"): "
           "the HRNN's probability that each user's next item is one of them.", _HRNN),
    Recipe("aws-trending-now", "USER_PERSONALIZATION",
           "The items whose interactions grew most over the last trend_discovery_frequency, counted "
           "from the stream between trainings.", _TRENDING, model="trending", needs_user=False),
    Recipe("aws-similar-items", "RELATED_ITEMS",
           "Items that co-occur in users' histories blended with items of like metadata, so an item "
           "nobody has interacted with yet has neighbours.", _SIMILAR, model="similar_items", metadata=True),
    Recipe("aws-next-best-action", "PERSONALIZED_ACTIONS",
           "The actions (ACTIONS dataset) a user will most likely take within action_optimization_period "
           "days: each action's take rate among the users whose items and actions are like the user's "
           "(GetActionRecommendations).", _NEXT_BEST_ACTION, model="next_best_action"),
    _use_case("aws-vod-top-picks", VOD, "USER_PERSONALIZATION",
              "Top picks for you: the user's next videos by HRNN over Watch and Click events.", "hrnn",
              event_types=("Watch", "Click"), drops_own="Watch"),
    _use_case("aws-vod-because-you-watched-x", VOD, "RELATED_ITEMS",
              "Because you watched X: videos other users watched with X.", "sims",
              event_types=("Watch",), drops_own="Watch"),
    _use_case("aws-vod-more-like-x", VOD, "RELATED_ITEMS",
              "More like X: videos similar to X by co-occurrence and metadata.", "similar_items",
              drops_own="Watch", needs_items=True),
    _use_case("aws-vod-most-popular", VOD, "USER_PERSONALIZATION",
              "Most popular: the most watched videos.", "popularity", event_types=("Watch",)),
    _use_case("aws-vod-trending-now", VOD, "USER_PERSONALIZATION",
              "Trending now: the videos whose interactions grew most lately.", "trending", needs_user=False),
    _use_case("aws-ecomm-recommended-for-you", ECOMMERCE, "USER_PERSONALIZATION",
              "Recommended for you: the user's next items by HRNN over View and Purchase events.", "hrnn",
              event_types=("View", "Purchase"), drops_own="Purchase"),
    _use_case("aws-ecomm-customers-who-viewed-x-also-viewed", ECOMMERCE, "RELATED_ITEMS",
              "Customers who viewed X also viewed: items viewed with X.", "sims",
              event_types=("View",), drops_own="Purchase"),
    _use_case("aws-ecomm-frequently-bought-together", ECOMMERCE, "RELATED_ITEMS",
              "Frequently bought together: items bought in the same session as X.", "bought_together",
              event_types=("Purchase",), needs_user=False),
    _use_case("aws-ecomm-popular-items-by-purchases", ECOMMERCE, "USER_PERSONALIZATION",
              "Best sellers: the most purchased items.", "popularity", event_types=("Purchase",)),
    _use_case("aws-ecomm-popular-items-by-views", ECOMMERCE, "USER_PERSONALIZATION",
              "Most viewed: the most viewed items.", "popularity", event_types=("View",)),
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
