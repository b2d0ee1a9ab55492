"""Next-Best-Action (aws-next-best-action), the part training and serving share: a user's
propensity to take each action, and GetActionRecommendations' answer, as pure numpy.

A trained version (`ActionModel`, written by training/next_best_action.py) holds, for its
actions (the ACTIONS dataset's, at most 1000 as Personalize trains on):

- each action's take rate: TAKEN events over TAKEN + NOT_TAKEN + VIEWED, where a NOT_TAKEN or
  VIEWED that the same user's TAKEN of the action followed within `action_optimization_period`
  days is no refusal; smoothed towards the rate of all actions;
- per feature f and action a, the take rate of a among the users who have f (the feature's
  peers), smoothed towards a's own rate, and how much evidence it has. A user's features are the
  items of their newest item interactions (the INTERACTIONS dataset, PutEvents) and the actions
  they took.

A user's propensity for a is the evidence-weighted mean of their features' rates, blended with
a's own rate (`propensities`): what users who did what this user did go on to take. An action
has a propensity only once it has Personalize's minimum of recent action interactions (50
TAKEN, 50 NOT_TAKEN or VIEWED within 6 weeks of the newest one); before that it scores 0.0, as
Personalize's do, and comes after the scored ones. `recommend` answers from the catalogue of
actions as of now (the ACTIONS dataset: new actions score 0.0, expired ones never appear), leaves
out what the user took within its REPEAT_FREQUENCY days, and breaks ties by VALUE, as
Personalize ranks "the action with the greater value higher" between equally likely ones.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TAKEN, NOT_TAKEN, VIEWED = "TAKEN", "NOT_TAKEN", "VIEWED"
EVENT_TYPES = (TAKEN, NOT_TAKEN, VIEWED)
DAY_S = 86_400
MIN_TAKEN = 50  # Personalize: an action has a score once it has this many TAKEN interactions
MIN_NOT_TAKEN = 50  # ... and this many NOT_TAKEN or VIEWED ones
RECENT_S = 6 * 7 * DAY_S  # ... within 6 weeks of the newest action interaction
MAX_ACTIONS = 1000  # Personalize trains on at most 1000 actions
FEATURES_PER_USER = 100  # a user's newest distinct items that describe them
OWN_RATE_WEIGHT = 1.0  # how many features' worth of evidence an action's own rate counts for
MAX_RESULTS, DEFAULT_RESULTS = 100, 5  # GetActionRecommendations' numResults
_SPACES = re.compile(r"[\s_]+")


def event_type(text: str) -> str | None:
    """TAKEN, NOT_TAKEN or VIEWED, for the ways Personalize's docs write them (Taken, Not Taken,
    NOT_TAKEN, Not taken, viewed); None for anything else."""
    key = _SPACES.sub("_", text.strip()).upper()
    return key if key in EVENT_TYPES else None


@dataclass(frozen=True)
class ActionModel:
    """What a trained version knows of its actions; arrays are indexed by action code."""
    action_ids: tuple[str, ...]
    rate: np.ndarray  # float32 [A]: each action's smoothed take rate
    eligible: np.ndarray  # bool [A]: enough recent interactions to have a score (else 0.0)
    item_rows: np.ndarray  # int32 [n_items]: an item's feature row (-1: not a feature)
    weighted: np.ndarray  # float32 [F, A]: evidence * peers' take rate; rows: items, then "took a"
    weight: np.ndarray  # float32 [F, A]: evidence, (P + N) / (P + N + prior); 0 on "took a" -> a
    # the actions each user took, as of training, with the last time (CSR over `users`)
    users: Mapping[str, int]
    taken_offsets: np.ndarray  # int64 [len(users) + 1]
    taken_actions: np.ndarray  # int32 action codes
    taken_times: np.ndarray  # int64 Unix seconds: the user's last TAKEN of that action
    # the actions' limits as of training (the live catalogue's, when it has the action, win)
    value: np.ndarray  # float64 [A], NaN: none
    expiration: np.ndarray  # float64 [A] Unix seconds, +inf: never
    repeat_s: np.ndarray  # float64 [A] seconds between recommendations after a TAKEN, NaN: none
    created: np.ndarray  # float64 [A] Unix seconds, NaN: unknown
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {a: i for i, a in enumerate(self.action_ids)})

    @property
    def n_actions(self) -> int:
        return len(self.action_ids)

    @property
    def first_action_row(self) -> int:
        """The feature row of "took action 0"; items' rows come before it."""
        return len(self.weighted) - self.n_actions

    def taken(self, user_id: str | None) -> tuple[np.ndarray, np.ndarray]:
        """(action codes, last TAKEN times) of the user's actions as of training."""
        u = self.users.get(user_id) if user_id is not None else None
        if u is None:
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        a, b = int(self.taken_offsets[u]), int(self.taken_offsets[u + 1])
        return self.taken_actions[a:b], self.taken_times[a:b]


def newest_distinct(codes: np.ndarray, keep: int = FEATURES_PER_USER) -> np.ndarray:
    """The last `keep` distinct codes of a history, oldest first."""
    reversed_codes = codes[::-1]
    _, first = np.unique(reversed_codes, return_index=True)
    return reversed_codes[np.sort(first)[:keep]][::-1]


def propensities(model: ActionModel, item_codes: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """float32 [A]: the user's propensity for each action, from the items of their history
    (codes of the model's item vocabulary, newest last) and the action codes they took; 0.0
    for an action without Personalize's minimum of recent interactions."""
    rows = model.item_rows[newest_distinct(np.asarray(item_codes, dtype=np.int64))] \
        if len(item_codes) else np.zeros(0, np.int32)
    rows = np.concatenate([rows[rows >= 0], model.first_action_row + np.unique(np.asarray(taken, np.int64))])
    return blended(model, model.weighted[rows].sum(0, dtype=np.float64),
                   model.weight[rows].sum(0, dtype=np.float64))


def blended(model: ActionModel, weighted: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Propensities (float32 [..., A]) from the sums of a user's features' `weighted` and `weight`
    rows: their evidence-weighted mean rate, blended with each action's own rate."""
    num = weighted + OWN_RATE_WEIGHT * model.rate
    return np.where(model.eligible, num / (weight + OWN_RATE_WEIGHT), 0.0).astype(np.float32)


@dataclass(frozen=True)
class Catalogue:
    """The actions there are now, with what limits them: the ACTIONS dataset as of now."""
    ids: tuple[str, ...]
    value: np.ndarray  # float64, NaN: none
    expiration: np.ndarray  # float64 Unix seconds, +inf: never
    repeat_s: np.ndarray  # float64 seconds, NaN: none
    created: np.ndarray  # float64 Unix seconds, NaN: unknown

    @classmethod
    def of(cls, ids: Sequence[str], columns: Mapping[str, Sequence[Any]]) -> Catalogue:
        """From the ACTIONS dataset's columns (None: no value); the reserved ones it lacks are none."""
        def numbers(name: str, missing: float, scale: float = 1.0) -> np.ndarray:
            values = columns.get(name) or [None] * len(ids)
            return np.array([missing if v is None else float(v) * scale for v in values], dtype=np.float64)
        return cls(tuple(ids), numbers("VALUE", math.nan), numbers("EXPIRATION_TIMESTAMP", math.inf),
                   numbers("REPEAT_FREQUENCY", math.nan, DAY_S), numbers("CREATION_TIMESTAMP", math.nan))

    @classmethod
    def trained(cls, model: ActionModel) -> Catalogue:
        """The model's own actions, as they were when it trained (no ACTIONS dataset to read)."""
        return cls(model.action_ids, model.value, model.expiration, model.repeat_s, model.created)


def recommend(model: ActionModel, catalogue: Catalogue, scores: np.ndarray, user_taken: tuple[np.ndarray,
              np.ndarray], now: float, k: int) -> list[tuple[str, float]]:
    """GetActionRecommendations' k actions, best first, with their propensities: the catalogue's
    actions (one the model never trained on scores 0.0) that have not expired and that the user
    did not take within their repeat frequency, by propensity, then VALUE, then the newest."""
    ids = catalogue.ids
    if not ids:
        return []
    codes = np.array([model.index.get(a, -1) for a in ids], dtype=np.int64)
    trained = codes >= 0
    score = np.where(trained, scores[np.maximum(codes, 0)], 0.0).astype(np.float64)
    position = np.full(model.n_actions, -1, dtype=np.int64)
    position[codes[trained]] = np.flatnonzero(trained)
    last_taken = np.full(len(ids), -math.inf)
    taken_codes, taken_times = user_taken
    at = position[np.asarray(taken_codes, dtype=np.int64)] if len(taken_codes) else np.zeros(0, np.int64)
    known = at >= 0
    np.maximum.at(last_taken, at[known], np.asarray(taken_times, dtype=np.float64)[known])
    waiting = np.nan_to_num(catalogue.repeat_s, nan=-math.inf)
    open_ = (catalogue.expiration > now) & ~(last_taken + waiting > now)
    value = np.nan_to_num(catalogue.value, nan=-math.inf)
    created = np.nan_to_num(catalogue.created, nan=-math.inf)
    order = np.lexsort((np.arange(len(ids)), -created, -value, -score))
    chosen = order[open_[order]][:k]
    return [(ids[i], round(float(score[i]), 7)) for i in chosen.tolist()]
