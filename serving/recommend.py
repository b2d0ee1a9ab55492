"""GetRecommendations and GetPersonalizedRanking as named steps over a loaded model, with no I/O.

The routes (serving/runtime_api.py) read what a request needs (the campaign, the user's
session state, the filters' answers) and hand it here, where a recommendation is

    state -> candidates -> exact or ANN scoring -> promotions -> exploration -> answer

- state: `User`, whose model state `Model.user_state` alone decides the source of;
- candidates: `Exclusions` (serving.exclusions), the items excluded one by one (`excluded`) and
  the filter's allowed set;
- scoring: the ANN index's top k (`approximate`) where it may answer, else every candidate's
  exact score (`scores`, `exact`);
- promotions and exploration reorder the top k of the normalised scores (`promoted`, `explored`);
- answer: the items with Personalize's scores (`answer`).

Items the user interacted with stay candidates: Personalize's campaigns recommend them too
("watch again", "buy again") and leave them out only through a filter. Scores are normalised
over the catalogue so they sum to 1 (serving.ranking); the ANN path estimates that normaliser
(serving.candidates). GetPersonalizedRanking (`rank`) scores only its input items and
normalises over those it returns; items the model does not know come last with score 0.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from serving.exclusions import Allowed, Exclusions
from serving.ranking import Exploration, explore, normalise, probabilities, promote, rank_list, young

if TYPE_CHECKING:
    from serving.models import Model
    from stream.live_state import Past
    from stream.session import SessionState

RELATED_ITEMS, USER_PERSONALIZATION = "RELATED_ITEMS", "USER_PERSONALIZATION"
NONE_EXCLUDED = np.zeros(0, dtype=np.int64)
Item = dict[str, Any]


@dataclass(frozen=True)
class User:
    """Whom a request is for: `past`, the interactions the model knows (as of training, then
    streamed since); `live`, the user's session state as the stream workers keep it; `context`,
    the request's (DEVICE: phone), which the models that learnt it score with."""
    id: str | None
    past: Past
    live: SessionState | None = None
    context: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Promotion:
    """A request's promotion, with what its filter lets through (None: every item)."""
    name: str
    percent: int
    allowed: Allowed | None


class Ranked(NamedTuple):
    """The answer's items best first, each one's probability and, under a promotion, whether
    it is promoted."""
    codes: np.ndarray
    probs: np.ndarray
    promoted: np.ndarray | None = None


def excluded(recipe_type: str, item_code: int | None, user: User | None = None,
             drops_own: str | None = None) -> np.ndarray:
    """The codes a request may not get whatever its filter says: the item asked about, for
    related items, and, for a use case that drops them, the user's own items of its event
    type (videos watched, items bought), matched without case."""
    out = [item_code] if recipe_type == RELATED_ITEMS and item_code is not None else []
    if drops_own is not None and user is not None:
        kind = drops_own.lower()
        out += [code for code, event_type in user.past.typed() if event_type.lower() == kind]
    return np.unique(np.array(out, dtype=np.int64)) if out else NONE_EXCLUDED


def approximate(model: Model, user: User, exclusions: Exclusions, k: int) -> Ranked | None:
    """The ANN index's top k with estimated probabilities; None where exact scoring must answer."""
    found = model.approximate_top(user.past, user.id, exclusions, k, user.live, user.context)
    return None if found is None else Ranked(*found)


def scores(model: Model, recipe_type: str, user: User, item_code: int | None) -> np.ndarray:
    """Every item's score, O(catalog): the item's neighbours for related items (what is popular
    for an item the model does not know), else the user's."""
    if recipe_type == RELATED_ITEMS:
        return model.popularity if item_code is None else model.related_scores(item_code)
    return model.user_scores(user.past, user.id, user.live, user.context)


def exact(model: Model, scores: np.ndarray, exclusions: Exclusions, k: int) -> Ranked:
    """The k best candidates, their probabilities normalised over the catalogue."""
    codes = exclusions.top(scores, k)
    return Ranked(codes, probabilities(scores, codes, model.recipe))


def promoted(probs: np.ndarray, exclusions: Exclusions, promotion: Promotion, k: int,
             rng: np.random.Generator) -> Ranked:
    """The promotion's share of the k slots to the best items its filter lets through, the rest
    to the best candidates (serving.ranking.promote)."""
    promotable = Exclusions(exclusions.n_items, exclusions.codes, promotion.allowed).mask()
    codes, flags = promote(probs, exclusions.mask(), promotable, k, promotion.percent, rng)
    return Ranked(codes, probs[codes], flags)


def explored(model: Model, probs: np.ndarray, exclusions: Exclusions, exploration: Exploration, k: int,
             rng: np.random.Generator) -> Ranked:
    """The top k with exploration's share of slots to young items (serving.ranking.explore)."""
    assert model.created is not None
    fresh = young(model.created, model.data_cut, exploration.age_cut_off_days)
    codes = explore(probs, exclusions.mask(), k, fresh, model.popularity, exploration.weight, rng)
    return Ranked(codes, probs[codes])


def answer(model: Model, ranked: Ranked, promotion: str | None = None) -> list[Item]:
    """The answer's items: ids, probabilities rounded as Personalize's, promoted ones named."""
    ids = model.item_ids
    items: list[Item] = [{"itemId": ids[c], "score": round(p, 7)}
                         for c, p in zip(ranked.codes.tolist(), ranked.probs.tolist(), strict=True)]
    if ranked.promoted is not None:
        for item, is_promoted in zip(items, ranked.promoted.tolist(), strict=True):
            if is_promoted:
                item["promotionName"] = promotion
    return items


def recommend(model: Model, recipe_type: str, user: User, item_code: int | None, exclusions: Exclusions,
              k: int, *, promotion: Promotion | None = None, exploration: Exploration | None = None,
              rng: np.random.Generator | None = None) -> list[Item]:
    """GetRecommendations' items. Without a promotion or exploration the top k is the answer,
    the ANN index's where it may give it; either one reorders the exact scores' top k."""
    if promotion is None and exploration is None:
        found = approximate(model, user, exclusions, k) if recipe_type == USER_PERSONALIZATION else None
        if found is None:
            found = exact(model, scores(model, recipe_type, user, item_code), exclusions, k)
        return answer(model, found)
    probs = normalise(scores(model, recipe_type, user, item_code), model.recipe)
    rng = rng or np.random.default_rng()
    if promotion is not None:
        return answer(model, promoted(probs, exclusions, promotion, k, rng), promotion.name)
    assert exploration is not None
    return answer(model, explored(model, probs, exclusions, exploration, k, rng))


def rank(model: Model, user: User, items: list[str], allowed: Allowed | None) -> list[Item]:
    """GetPersonalizedRanking's answer: the input items the model knows and the filter lets
    through, best first, their scores normalised over them; then those it does not know."""
    asked = list(dict.fromkeys(items))
    known = [i for i in asked if i in model.index]
    codes = np.array([model.index[i] for i in known], dtype=np.int64)
    if allowed is not None:
        keep = allowed.contains(codes)
        known, codes = [i for i, ok in zip(known, keep.tolist(), strict=True) if ok], codes[keep]
    scored = model.scores_of(codes, user.past, user.id, user.live, user.context)
    order, probs = rank_list(scored, model.recipe)
    return [{"itemId": known[j], "score": round(float(probs[j]), 7)} for j in order.tolist()] + \
        [{"itemId": i, "score": 0.0} for i in asked if i not in model.index]
