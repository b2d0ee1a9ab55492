"""From a model's scores to Personalize's answer: normalised scores, the top k, and item exploration.

Exploration (aws-user-personalization's `itemExplorationConfig`) gives `round(weight * k)` slots of
the list to young items, so items with little interaction data get shown and can earn some: the
user-personalization recipe's answer to cold items. Pure numpy, no I/O.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from kernel.recipes import recipe_named

DAY = 86_400


def softmaxed(recipe: str) -> bool:
    """HRNN recipes' scores are logits: normalised by a softmax; counts and similarities by their sum."""
    return recipe_named(recipe).softmax_scores


def normalise(scores: np.ndarray, recipe: str) -> np.ndarray:
    """HRNN recipes: softmax over the catalog (probabilities of the next item); counts and
    similarities: shares of their sum."""
    if softmaxed(recipe):
        e = np.exp(scores - scores.max())
        return e / e.sum()
    total = float(scores.sum())
    return scores / total if total > 0 else np.full_like(scores, 1.0 / max(len(scores), 1))


def rank_list(scores: np.ndarray, recipe: str) -> tuple[np.ndarray, np.ndarray]:
    """GetPersonalizedRanking: `scores` are the model's for the input items only; returns their
    positions best first (ties keep the input's order) and their scores normalised over those
    items, so they sum to 1 (Personalize: "only the input items receive scores")."""
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    probs = normalise(scores, recipe)
    return np.argsort(-probs, kind="stable"), probs


def probabilities(scores: np.ndarray, codes: np.ndarray, recipe: str) -> np.ndarray:
    """normalise(scores, recipe)[codes], without dividing the whole catalog."""
    if softmaxed(recipe):
        shift = scores.max()
        return np.exp(scores[codes] - shift) / np.exp(scores - shift).sum()
    total = float(scores.sum())
    return scores[codes] / total if total > 0 else np.full(len(codes), 1.0 / max(len(scores), 1))


def top(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Codes of the k best allowed items, best first."""
    return best(np.where(allowed, scores, -np.inf), k, int(np.count_nonzero(allowed)))


def best(masked: np.ndarray, k: int, n_allowed: int) -> np.ndarray:
    """Codes of the k highest of `masked` (scores, -inf for the items not allowed; `n_allowed`
    are), best first. A selection over an array that is mostly -inf (a narrow filter) degrades
    on the ties, ten times slower than over the allowed scores alone, so those are selected
    from the finite ones only."""
    k = min(k, n_allowed)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if n_allowed < len(masked) // 2:
        finite = np.flatnonzero(masked != -np.inf)
        return finite[best_of(masked[finite], k)]
    return best_of(masked, k)


def best_of(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest `scores` (k <= len(scores)), best first; ties keep their order."""
    idx = np.argpartition(scores, len(scores) - k)[len(scores) - k:]
    return idx[np.argsort(-scores[idx], kind="stable")]


@dataclass(frozen=True)
class Exploration:
    weight: float = 0.3  # Personalize's defaults
    age_cut_off_days: float = 30.0


# Personalize's campaign keys, and the recipe's hyperparameter names for the same two numbers
_KEYS = {"explorationWeight": "weight", "explorationItemAgeCutOff": "age_cut_off_days"}
_HYPERPARAMETERS = {"exploration_weight": "weight", "exploration_item_age_cut_off": "age_cut_off_days"}


def parse_exploration(config: Mapping[str, str] | None, base: Exploration = Exploration(),
                      names: Mapping[str, str] = _KEYS) -> Exploration:
    """`itemExplorationConfig` (string values, as Personalize takes them) over `base`; raises
    ValueError naming the key for unknown keys and out-of-range values."""
    out = {"weight": base.weight, "age_cut_off_days": base.age_cut_off_days}
    for key, text in (config or {}).items():
        if key not in names:
            raise ValueError(f"{key} is not an exploration setting; use {' or '.join(names)}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{key} must be a number, not {text!r}") from None
        field = names[key]
        if field == "weight" and not 0.0 <= value <= 1.0:
            raise ValueError(f"{key} must be between 0 and 1, not {text}")
        if field == "age_cut_off_days" and not value > 0:
            raise ValueError(f"{key} must be a positive number of days, not {text}")
        out[field] = value
    return Exploration(**out)


def exploration_of(hyperparameters: Mapping[str, str], campaign: Mapping[str, str] | None) -> Exploration:
    """The campaign's itemExplorationConfig over the solution's hyperparameters over the defaults."""
    trained = {k: v for k, v in hyperparameters.items() if k in _HYPERPARAMETERS}
    return parse_exploration(campaign, parse_exploration(trained, names=_HYPERPARAMETERS))


def young(created: np.ndarray, latest: float, cut_off_days: float) -> np.ndarray:
    """Items at most `cut_off_days` older than the newest interaction (Personalize's item age)."""
    return created >= latest - cut_off_days * DAY


def explore(probs: np.ndarray, allowed: np.ndarray, k: int, young: np.ndarray, counts: np.ndarray,
            weight: float, rng: np.random.Generator) -> np.ndarray:
    """The top k with `round(weight * k)` slots for young allowed items outside relevance's share.

    Picks are drawn in proportion to relevance x uncertainty ((p + mean p) / sqrt(1 + interactions):
    a relevant item with few interactions first, every young item some chance) and spread evenly
    from the bottom up, so the first slot stays relevance's unless the weight is 1 (then young
    items lead the list)."""
    best = top(probs, allowed, k)
    share = int(round(weight * len(best)))
    if share == 0:
        return best
    pool = allowed & young
    pool[best[:len(best) - share]] = False  # what relevance keeps anyway is no exploration
    codes = np.flatnonzero(pool)
    n = min(share, len(codes))
    if n == 0:
        return best
    p = (probs[codes] + probs[codes].mean() + 1e-12) / np.sqrt(1.0 + counts[codes])
    picks = rng.choice(codes, n, replace=False, p=p / p.sum())
    picks = picks[np.argsort(-probs[picks], kind="stable")]
    slots = np.zeros(len(best), dtype=bool)  # the share's positions; too few picks take the upper ones
    slots[np.sort(len(best) - 1 - (np.arange(share) * len(best)) // share)[:n]] = True
    out = np.empty(len(best), dtype=best.dtype)
    out[slots] = picks
    out[~slots] = best[~np.isin(best, picks)][:len(best) - n]
    return out


def promote(probs: np.ndarray, allowed: np.ndarray, promotable: np.ndarray, k: int, percent: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A promotion (Personalize's `promotions`): `percent`% of the k slots (rounded, at least one)
    go to the best `promotable` items, placed at random positions but in their own order; the
    rest is the best `allowed` items. Returns the codes and which of them are promoted; with too
    few promotable items, as many as there are."""
    n = min(max(1, int(k * percent / 100 + 0.5)), k)
    promoted = top(probs, promotable, n)
    rest = allowed.copy()
    rest[promoted] = False
    others = top(probs, rest, k - len(promoted))
    size = len(promoted) + len(others)
    slots = np.zeros(size, dtype=bool)
    slots[np.sort(rng.choice(size, len(promoted), replace=False))] = True
    out = np.empty(size, dtype=np.int64)
    out[slots], out[~slots] = promoted, others
    return out, slots
