"""Next-Best-Action (aws-next-best-action): fitting kernel.next_best_action's ActionModel from the
ACTIONS and ACTION_INTERACTIONS datasets and the users' item interactions, and measuring it.

Pure numpy over tables already read (no I/O): `action_data` codes the datasets, `user_items`
describes each user by the items of their newest interactions, `fit` counts, `measure` holds out
the newest action interactions and ranks actions for the users who took some of them.

The counts (kernel/next_best_action.py says how serving uses them), with P the TAKEN events and N
the NOT_TAKEN / VIEWED ones that no TAKEN of the same user and action followed within
`action_optimization_period` days:

    rate[a]    = (P[a] + PRIOR_EVENTS * p) / (P[a] + N[a] + PRIOR_EVENTS)     p: all actions' rate
    rate[f, a] = (P[f, a] + PRIOR_PEERS * rate[a]) / (P[f, a] + N[f, a] + PRIOR_PEERS)
    weight[f, a] = (P[f, a] + N[f, a]) / (P[f, a] + N[f, a] + PRIOR_PEERS)

where P[f, a] and N[f, a] sum P and N over the users who have feature f (an item among their
newest FEATURES_PER_USER distinct ones, or having taken an action; "took a" says nothing of a
itself). The [F, A] tables are dense: items beyond MAX_CELLS / A are left out, those with the
fewest users first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kernel.next_best_action import (
    DAY_S,
    EVENT_TYPES,
    FEATURES_PER_USER,
    MAX_ACTIONS,
    MIN_NOT_TAKEN,
    MIN_TAKEN,
    RECENT_S,
    ActionModel,
    blended,
)
from training.interactions import Interactions, newest_per_group
from training.metrics import TOP, scored

PRIOR_EVENTS = 10.0  # an action's rate: how many events' worth of all actions' rate it starts from
PRIOR_PEERS = 5.0  # a feature's rate: how many events' worth of the action's own rate
MAX_CELLS = 20_000_000  # feature rows x actions in the dense tables (two float32 tables: 160 MB)
HELD_OUT = 0.1  # the newest share of the action interactions the version is measured on
_TAKEN = 0  # ActionData.kind: index into EVENT_TYPES


@dataclass(frozen=True)
class ActionData:
    """The action interactions, coded: arrays per interaction, and per action its limits."""
    action_ids: np.ndarray  # code -> ACTION_ID (str objects): the actions trained on
    user_ids: np.ndarray  # code -> USER_ID of the users with action interactions
    user: np.ndarray  # int64 per interaction
    action: np.ndarray  # int64
    time: np.ndarray  # int64 Unix seconds
    kind: np.ndarray  # int8: index into EVENT_TYPES (0: TAKEN)
    value: np.ndarray  # float64 per action, NaN: none
    expiration: np.ndarray  # float64, +inf: never
    repeat_s: np.ndarray  # float64 seconds, NaN: none
    created: np.ndarray  # float64, NaN: unknown

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> ActionData:
        """Some of the interactions, with the same codes."""
        return ActionData(self.action_ids, self.user_ids, self.user[rows], self.action[rows], self.time[rows],
                          self.kind[rows], self.value, self.expiration, self.repeat_s, self.created)


def _numbers(table: pa.Table, name: str, missing: float, scale: float = 1.0) -> np.ndarray:
    if name not in table.column_names:
        return np.full(table.num_rows, missing)
    values = pc.cast(table[name], pa.float64()).to_numpy(zero_copy_only=False)
    return np.where(np.isnan(values), missing, values * scale)


def action_data(actions: pa.Table, interactions: pa.Table,
                max_actions: int = MAX_ACTIONS) -> tuple[ActionData, dict[str, int]]:
    """The ACTIONS dataset (one row per action) and the ACTION_INTERACTIONS one, coded; and the
    interactions left out, counted by why (of an action the ACTIONS dataset lacks, of another
    event type than TAKEN, NOT_TAKEN or VIEWED, of an action beyond the 1000 trained on). Of more
    than `max_actions` actions, those last active (created or interacted with) are kept."""
    ids = actions["ACTION_ID"].to_pylist() if actions.num_rows else []
    last = _numbers(actions, "CREATION_TIMESTAMP", -math.inf) if ids else np.zeros(0)
    skipped: dict[str, int] = {}
    if interactions.num_rows:
        code = pc.index_in(interactions["ACTION_ID"].cast(pa.string()), value_set=pa.array(ids, pa.string()))
        kinds = pc.replace_substring_regex(pc.utf8_upper(pc.utf8_trim_whitespace(
            pc.fill_null(interactions["EVENT_TYPE"].cast(pa.string()), ""))), r"[\s_]+", "_")
        kind = pc.index_in(kinds, value_set=pa.array(EVENT_TYPES))
        known, typed = np.asarray(pc.is_valid(code)), np.asarray(pc.is_valid(kind))
        user_ok = np.asarray(pc.is_valid(interactions["USER_ID"]))
        skipped = {why: int(n) for why, n in (("actionNotInActionsDataset", (~known).sum()),
                                              ("unknownEventType", (known & ~typed).sum()),
                                              ("withoutUserId", (known & typed & ~user_ok).sum())) if n}
        rows = np.flatnonzero(known & typed & user_ok)
        action = np.asarray(code.fill_null(0), dtype=np.int64)[rows]
        time = np.asarray(pc.cast(interactions["TIMESTAMP"], pa.int64()).fill_null(0), dtype=np.int64)[rows]
        np.maximum.at(last, action, time.astype(np.float64))
        users = interactions["USER_ID"].cast(pa.string()).combine_chunks().take(pa.array(rows))
        users = users.dictionary_encode()
        user = np.asarray(users.indices, dtype=np.int64)
        user_ids = np.asarray(users.dictionary.to_pylist(), dtype=object)
        kind_code = np.asarray(kind.fill_null(0), dtype=np.int8)[rows]
    else:
        action = time = user = np.zeros(0, np.int64)
        kind_code, user_ids = np.zeros(0, np.int8), np.zeros(0, dtype=object)
    kept = np.arange(len(ids))
    if len(ids) > max_actions:  # Personalize's cap: the newest and the recently used first
        kept = np.sort(np.lexsort((np.arange(len(ids)), -last))[:max_actions])
        remap = np.full(len(ids), -1, np.int64)
        remap[kept] = np.arange(len(kept))
        inside = remap[action] >= 0
        if n := int((~inside).sum()):
            skipped["actionBeyondTheFirst1000"] = n
        action, time, user, kind_code = remap[action[inside]], time[inside], user[inside], kind_code[inside]
    table = actions.take(pa.array(kept)) if len(ids) else actions
    return ActionData(np.asarray(ids, dtype=object)[kept], user_ids, user, action, time, kind_code,
                      _numbers(table, "VALUE", math.nan), _numbers(table, "EXPIRATION_TIMESTAMP", math.inf),
                      _numbers(table, "REPEAT_FREQUENCY", math.nan, DAY_S),
                      _numbers(table, "CREATION_TIMESTAMP", math.nan)), skipped


def user_items(data: Interactions, user_ids: np.ndarray,
               before: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
    """(user code in `user_ids`, item code) for each of the users' newest FEATURES_PER_USER
    distinct items among their item interactions before `before`: what describes them."""
    rows = np.flatnonzero(data.time < before)
    pair = data.user[rows].astype(np.int64) * max(1, data.n_items) + data.item[rows]
    newest = rows[newest_per_group(pair, data.time[rows], 1)]  # each (user, item) at its last time
    newest = newest[newest_per_group(data.user[newest].astype(np.int64), data.time[newest],
                                     FEATURES_PER_USER)]
    index = {u: i for i, u in enumerate(user_ids.tolist())}
    mapping = np.array([index.get(u, -1) for u in data.user_ids.tolist()], dtype=np.int64)
    users = mapping[data.user[newest]] if len(newest) else np.zeros(0, np.int64)
    mine = users >= 0
    return users[mine], data.item[newest][mine].astype(np.int64)


def outcomes(data: ActionData, period_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per interaction, whether it is a TAKEN (P) and whether it is a NOT_TAKEN or VIEWED that no
    TAKEN of the same user and action followed within `period_s` (N)."""
    taken = data.kind == _TAKEN
    group = data.user * max(1, len(data.action_ids)) + data.action
    _, g = np.unique(group, return_inverse=True)
    times, t = np.unique(data.time, return_inverse=True)
    key = g.astype(np.int64) * (len(times) + 1) + t
    takes = np.sort(key[taken])
    nxt = np.searchsorted(takes, key, side="left")  # the first TAKEN at or after it, in any group
    found = nxt < len(takes)
    after = takes[np.minimum(nxt, len(takes) - 1)] if len(takes) else key
    same = found & (after // (len(times) + 1) == g)
    followed = same & (times[after % (len(times) + 1)] - data.time <= period_s)
    return taken, ~taken & ~followed


def fit(data: ActionData, features: tuple[np.ndarray, np.ndarray], n_items: int, period_days: int, *,
        min_taken: int = MIN_TAKEN, min_not_taken: int = MIN_NOT_TAKEN, max_cells: int = MAX_CELLS
        ) -> ActionModel:
    """The model of these interactions; `features`: user_items' (user, item code) pairs."""
    n_actions, n_users = len(data.action_ids), len(data.user_ids)
    pos, neg = outcomes(data, period_days * DAY_S)
    p_a = np.bincount(data.action, weights=pos, minlength=n_actions)
    n_a = np.bincount(data.action, weights=neg, minlength=n_actions)
    overall = p_a.sum() / max(1.0, p_a.sum() + n_a.sum())
    rate = (p_a + PRIOR_EVENTS * overall) / (p_a + n_a + PRIOR_EVENTS)
    recent = data.time >= (data.time.max() if len(data) else 0) - RECENT_S
    eligible = (np.bincount(data.action[recent & pos.astype(bool)], minlength=n_actions) >= min_taken) & \
        (np.bincount(data.action[recent & (data.kind != _TAKEN)], minlength=n_actions) >= min_not_taken)

    # per (user, action): P and N, and the actions each user took (features "took a")
    pair = data.user * max(1, n_actions) + data.action
    pairs, inverse = np.unique(pair, return_inverse=True)
    p_ua = np.bincount(inverse, weights=pos, minlength=len(pairs))
    n_ua = np.bincount(inverse, weights=neg, minlength=len(pairs))
    pair_user, pair_action = pairs // max(1, n_actions), pairs % max(1, n_actions)

    f_user, f_item = features
    users_per_item = np.bincount(np.unique(f_user * max(1, n_items) + f_item) % max(1, n_items),
                                 minlength=n_items) if n_items else np.zeros(0, np.int64)
    room = max(0, max_cells // max(1, n_actions) - n_actions)
    ranked = np.lexsort((np.arange(n_items), -users_per_item))
    chosen = np.sort(ranked[users_per_item[ranked] > 0][:room])
    item_rows = np.full(n_items, -1, np.int32)
    item_rows[chosen] = np.arange(len(chosen), dtype=np.int32)
    n_features = len(chosen) + n_actions
    took = p_ua > 0
    rows_of_item = item_rows[f_item] if len(f_item) else np.zeros(0, np.int32)
    feat_user = np.concatenate([f_user[rows_of_item >= 0], pair_user[took]])
    feat_row = np.concatenate([rows_of_item[rows_of_item >= 0], len(chosen) + pair_action[took]])
    order = np.argsort(feat_user, kind="stable")
    feat_user, feat_row = feat_user[order], feat_row[order]
    start = np.searchsorted(feat_user, np.arange(n_users + 1))

    p_fa = np.zeros(n_features * n_actions)
    n_fa = np.zeros(n_features * n_actions)
    counts = start[pair_user + 1] - start[pair_user]
    for lo, hi in _chunks(counts, 5_000_000):  # every feature of the user of each (user, action)
        reps = counts[lo:hi]
        base = np.repeat(start[pair_user[lo:hi]] - np.cumsum(reps) + reps, reps)
        rows = feat_row[base + np.arange(int(reps.sum()))]
        cells = rows * n_actions + np.repeat(pair_action[lo:hi], reps)
        p_fa += np.bincount(cells, weights=np.repeat(p_ua[lo:hi], reps), minlength=len(p_fa))
        n_fa += np.bincount(cells, weights=np.repeat(n_ua[lo:hi], reps), minlength=len(n_fa))
    p_fa, n_fa = p_fa.reshape(n_features, n_actions), n_fa.reshape(n_features, n_actions)
    own = np.arange(n_actions)
    p_fa[len(chosen) + own, own] = n_fa[len(chosen) + own, own] = 0.0  # "took a" says nothing of a
    seen = p_fa + n_fa
    peer_rate = (p_fa + PRIOR_PEERS * rate) / (seen + PRIOR_PEERS)
    weight = seen / (seen + PRIOR_PEERS)

    # each user's last TAKEN of each action
    took_user, took_action = pair_user[took], pair_action[took]
    last = np.full(len(pairs), np.iinfo(np.int64).min)
    np.maximum.at(last, inverse[pos.astype(bool)], data.time[pos.astype(bool)])
    took_users, took_start = np.unique(took_user, return_index=True)
    offsets = np.append(took_start, len(took_user)).astype(np.int64)
    return ActionModel(
        tuple(data.action_ids.tolist()), rate.astype(np.float32), eligible, item_rows,
        (weight * peer_rate).astype(np.float32), weight.astype(np.float32),
        {data.user_ids[u]: i for i, u in enumerate(took_users.tolist())}, offsets,
        took_action.astype(np.int32), last[took].astype(np.int64),
        data.value, data.expiration, data.repeat_s, data.created)


def _chunks(counts: np.ndarray, cells: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of `counts` whose sums stay near `cells` (bounded memory per step)."""
    marks = np.arange(cells, int(counts.sum()) + cells, cells)
    ends = np.searchsorted(np.cumsum(counts), marks, side="right")
    bounds = np.unique(np.concatenate([[0], np.minimum(ends, len(counts)), [len(counts)]]))
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def scores_of(model: ActionModel, data: ActionData, features: tuple[np.ndarray, np.ndarray],
              users: np.ndarray) -> np.ndarray:
    """float32 [len(users), A]: kernel.next_best_action.propensities of each of `users` (codes in
    `data.user_ids`), for all of them at once: their `features` (user_items' pairs) and the actions
    they took as the model knows them."""
    at = np.full(len(data.user_ids), -1, np.int64)
    at[users] = np.arange(len(users))
    f_user, f_item = features
    rows = model.item_rows[f_item] if len(f_item) else np.zeros(0, np.int32)
    keep = (at[f_user] >= 0) & (rows >= 0)
    known = np.array([model.users.get(data.user_ids[u], -1) for u in users.tolist()], dtype=np.int64)
    has = known >= 0
    first, counts = model.taken_offsets[known[has]], np.diff(model.taken_offsets)[known[has]]
    taken = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
    pair_user = np.concatenate([at[f_user[keep]], np.repeat(np.flatnonzero(has), counts)])
    pair_row = np.concatenate([rows[keep], model.first_action_row + model.taken_actions[taken]])
    weighted = np.zeros((len(users), model.n_actions))
    weight = np.zeros((len(users), model.n_actions))
    for lo in range(0, len(pair_user), 1_000_000):
        some = slice(lo, lo + 1_000_000)
        np.add.at(weighted, pair_user[some], model.weighted[pair_row[some]])
        np.add.at(weight, pair_user[some], model.weight[pair_row[some]])
    return blended(model, weighted, weight)


def measure(data: ActionData, items: Interactions, period_days: int, **fit_args: int
            ) -> tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, int]]:
    """Metrics of a version fitted on all but the newest HELD_OUT of the action interactions, on
    the actions each user TOOK among those (ranked among all the actions: relevant = taken), with
    their 95% intervals, the same for the actions' take rates alone (the baseline), and the test
    set's size. Users are described by their items and actions from before the held-out time."""
    if len(data) < 2:
        nothing = scored(np.full((0, TOP), -1), [], max(1, len(data.action_ids)))
        return nothing[0], nothing[1], nothing[0], {"users": 0, "interactions": 0}
    cut = float(np.quantile(data.time, 1 - HELD_OUT))
    before = data.time < cut
    features = user_items(items, data.user_ids, cut)
    model = fit(data.take(np.flatnonzero(before)), features, items.n_items, period_days, **fit_args)
    later = ~before & (data.kind == _TAKEN)
    users, first = np.unique(data.user[later], return_index=True)
    width = max(TOP, model.n_actions)
    ranked = np.full((len(users), width), -1, np.int64)
    ranked[:, :model.n_actions] = np.argsort(-scores_of(model, data, features, users), axis=1, kind="stable")
    baseline = np.full((len(users), width), -1, np.int64)
    baseline[:, :model.n_actions] = np.lexsort((np.arange(model.n_actions), -model.rate))
    order = np.argsort(data.user[later], kind="stable")
    grouped, bounds = data.action[later][order], np.searchsorted(data.user[later][order], users)
    held_out = [np.unique(part) for part in np.split(grouped, bounds[1:])] if len(users) else []
    metrics, intervals = scored(ranked, held_out, max(1, model.n_actions))
    base, _ = scored(baseline, held_out, max(1, model.n_actions))
    return metrics, intervals, base, {"users": len(users), "interactions": int(later.sum())}
