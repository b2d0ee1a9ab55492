"""aws-next-best-action: the model (training/next_best_action.py), the answer
(kernel/next_best_action.py), its artifact files, and the ACTIONS / ACTION_INTERACTIONS datasets'
puts (kernel/datasets.py), on small synthetic data whose answer is known."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kernel.artifact_files import read_actions, write_actions
from kernel.contract import DatasetRecord
from kernel.datasets import DatasetStore
from kernel.next_best_action import DAY_S, Catalogue, event_type, propensities, recommend
from training.interactions import Interactions, from_table
from training.next_best_action import action_data, fit, measure, outcomes, scores_of, user_items

T0 = 1_700_000_000
ACTIONS = ["a0", "a1", "a2", "a3", "a4"]
# segment 0 takes a0 and a1, segment 1 a2 and a3; a4 is seldom taken by anyone
TAKE = {0: (0.7, 0.6, 0.1, 0.1, 0.05), 1: (0.1, 0.1, 0.7, 0.6, 0.05)}


def synthetic(users: int = 200, per_user: int = 15, seed: int = 0) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(ACTIONS, ACTION_INTERACTIONS, INTERACTIONS): users of two segments, each with items of its
    own, and the actions each segment takes."""
    rng = np.random.default_rng(seed)
    items, events = [], []
    for u in range(users):
        segment = u % 2
        for j in range(8):
            item = f"i{segment * 10 + rng.integers(10)}" if rng.random() < 0.8 else f"i{20 + rng.integers(5)}"
            items.append((f"u{u}", item, T0 + j * 3600))
        for k in range(per_user):
            a = int(rng.integers(len(ACTIONS)))
            took = rng.random() < TAKE[segment][a]
            events.append((f"u{u}", ACTIONS[a], T0 + DAY_S + k * 7200,
                           "Taken" if took else str(rng.choice(["Not Taken", "VIEWED"]))))
    actions = pa.table({"ACTION_ID": [*ACTIONS, "a5"], "VALUE": [1, 2, None, 4, 5, 9],
                        "EXPIRATION_TIMESTAMP": pa.array([None] * 6, pa.int64())})
    return actions, _table(("USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"), events), \
        _table(("USER_ID", "ITEM_ID", "TIMESTAMP"), items)


def _table(names: tuple[str, ...], rows: list[tuple[object, ...]]) -> pa.Table:
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


def history(items: Interactions, user: str) -> np.ndarray:
    code = items.user_ids.tolist().index(user)
    return items.item[items.offsets[code]:items.offsets[code + 1]]


@pytest.fixture(scope="module")
def trained() -> tuple[object, Interactions, pa.Table]:
    actions, events, rows = synthetic()
    data, _ = action_data(actions, events)
    items = from_table(rows)
    return fit(data, user_items(items, data.user_ids), items.n_items, 14), items, actions


@pytest.mark.parametrize(("text", "kind"), [("Taken", "TAKEN"), ("Not Taken", "NOT_TAKEN"),
                                            ("NOT_TAKEN", "NOT_TAKEN"), (" not  taken ", "NOT_TAKEN"),
                                            ("viewed", "VIEWED"), ("click", None), ("", None)])
def test_the_event_types_are_taken_as_personalize_writes_them(text: str, kind: str | None) -> None:
    assert event_type(text) == kind


def test_a_view_that_the_user_took_within_the_period_is_no_refusal() -> None:
    actions = pa.table({"ACTION_ID": ["a"], "VALUE": [1]})
    events = _table(("USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"), [
        ("u", "a", T0, "VIEWED"), ("u", "a", T0 + 2 * DAY_S, "TAKEN"),  # taken 2 days after the view
        ("v", "a", T0, "VIEWED"), ("v", "a", T0 + 20 * DAY_S, "TAKEN"),  # 20 days after: a refusal
        ("w", "a", T0, "NOT_TAKEN")])
    data, _ = action_data(actions, events)
    taken, refused = outcomes(data, 14 * DAY_S)
    by_row = {(data.user_ids[u], int(t)): (bool(p), bool(n))
              for u, t, p, n in zip(data.user, data.time, taken, refused, strict=True)}
    assert by_row == {("u", T0): (False, False), ("u", T0 + 2 * DAY_S): (True, False),
                      ("v", T0): (False, True), ("v", T0 + 20 * DAY_S): (True, False),
                      ("w", T0): (False, True)}


def test_users_get_the_actions_their_peers_take(trained: tuple) -> None:
    model, items, actions = trained
    catalogue = Catalogue.of(actions["ACTION_ID"].to_pylist(), actions.to_pydict())
    for user, mine in (("u0", {"a0", "a1"}), ("u1", {"a2", "a3"}), ("u10", {"a0", "a1"})):
        scores = propensities(model, history(items, user), model.taken(user)[0])
        top = recommend(model, catalogue, scores, model.taken(user), T0 + 30 * DAY_S, 2)
        assert {a for a, _ in top} == mine, (user, top)
        assert top[0][1] > 0.5 > scores[model.index[sorted({"a0", "a1", "a2", "a3"} - mine)[0]]]
    # a user we know nothing of: the actions by their take rate alone
    anonymous = propensities(model, np.zeros(0, np.int64), np.zeros(0, np.int32))
    np.testing.assert_allclose(anonymous[model.eligible], model.rate[model.eligible], rtol=1e-6)


def test_an_action_without_personalizes_minimum_scores_zero_and_comes_last_by_value(trained: tuple) -> None:
    model, items, actions = trained
    assert model.eligible.tolist() == [True, True, True, True, False, False]  # a4: few TAKEN; a5: none
    catalogue = Catalogue.of(actions["ACTION_ID"].to_pylist(), actions.to_pydict())
    scores = propensities(model, history(items, "u0"), model.taken("u0")[0])
    answer = recommend(model, catalogue, scores, model.taken("u0"), T0 + 30 * DAY_S, 100)
    assert answer[-2:] == [("a5", 0.0), ("a4", 0.0)]  # equal scores: the greater VALUE first
    assert [s for _, s in answer] == sorted((s for _, s in answer), reverse=True)


def test_expired_actions_never_appear_and_repeats_wait_their_frequency(trained: tuple) -> None:
    model, items, _ = trained
    now = T0 + 30 * DAY_S
    user = next(u for u in ("u0", "u2", "u4", "u6") if model.index["a0"] in model.taken(u)[0].tolist())
    last = int(model.taken(user)[1][model.taken(user)[0].tolist().index(model.index["a0"])])
    scores = propensities(model, history(items, user), model.taken(user)[0])

    def offered(expires: float | None, repeat_days: float | None, at: float) -> set[str]:
        catalogue = Catalogue.of(["a0", "a1", "new"], {"EXPIRATION_TIMESTAMP": [expires, None, None],
                                                       "REPEAT_FREQUENCY": [repeat_days, None, None]})
        return {a for a, _ in recommend(model, catalogue, scores, model.taken(user), at, 10)}

    assert offered(None, None, now) == {"a0", "a1", "new"}  # an action trained on nothing is offered, at 0.0
    assert offered(now - 1, None, now) == {"a1", "new"}  # expired
    assert offered(now + 1, None, now) == {"a0", "a1", "new"}
    days = math.ceil((now - last) / DAY_S)
    assert offered(None, days + 1, now) == {"a1", "new"}  # taken within its repeat frequency
    assert offered(None, days - 1, now) == {"a0", "a1", "new"}
    # the catalogue is what may be offered: a trained action it lacks is not
    assert "a2" not in offered(None, None, now)


def test_taking_an_action_says_nothing_of_that_action_itself(trained: tuple) -> None:
    model, _, _ = trained
    rows = model.first_action_row + np.arange(model.n_actions)
    assert np.all(model.weight[rows, np.arange(model.n_actions)] == 0)
    assert np.all(model.weight[rows] >= 0) and model.weight[rows].sum() > 0


def test_the_data_left_out_is_counted_and_at_most_the_newest_actions_train() -> None:
    actions = pa.table({"ACTION_ID": ["a", "b", "c"], "CREATION_TIMESTAMP": [T0, T0 + 5, T0 + 9]})
    events = _table(("USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"), [
        ("u", "a", T0 + 100, "TAKEN"), ("u", "zz", T0, "TAKEN"), ("u", "b", T0, "clicked"),
        ("u", "b", T0, "VIEWED"), ("v", "c", T0, "Not taken")])
    data, skipped = action_data(actions, events)
    assert skipped == {"actionNotInActionsDataset": 1, "unknownEventType": 1}
    assert len(data) == 3 and data.action_ids.tolist() == ["a", "b", "c"]
    capped, skipped = action_data(actions, events, max_actions=2)
    assert capped.action_ids.tolist() == ["a", "c"]  # a: interacted with last; c: created last
    assert skipped["actionBeyondTheFirst1000"] == 1


def test_the_version_is_measured_against_take_rates_alone() -> None:
    actions, events, rows = synthetic(users=300, per_user=20, seed=1)
    data, _ = action_data(actions, events)
    metrics, intervals, baseline, test = measure(data, from_table(rows), 14)
    assert test["users"] > 50 and test["interactions"] >= test["users"]
    assert metrics["normalized_discounted_cumulative_gain_at_5"] > \
        baseline["normalized_discounted_cumulative_gain_at_5"] + 0.05
    assert 0 < intervals["normalized_discounted_cumulative_gain_at_5"] < 0.1


def test_the_artifact_files_give_the_same_model_back(trained: tuple, tmp_path: Path) -> None:
    model, items, _ = trained
    files = write_actions(tmp_path, model)
    again = read_actions(tmp_path, files)
    assert again.action_ids == model.action_ids and dict(again.users) == dict(model.users)
    for user in ("u0", "u1", "nobody"):
        np.testing.assert_array_equal(
            propensities(again, history(items, "u0"), again.taken(user)[0]),
            propensities(model, history(items, "u0"), model.taken(user)[0]))


def test_action_interactions_append_and_an_event_stored_twice_is_read_once(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)

    def event(record_id: str, user: str, at: float) -> DatasetRecord:
        return DatasetRecord(record_id=record_id, dataset_group="g", dataset_type="ACTION_INTERACTIONS",
                             id=user, fields={"USER_ID": user, "ACTION_ID": "a", "TIMESTAMP": T0,
                                              "EVENT_TYPE": "TAKEN"}, received_at=at)

    store.put([event("e1", "u1", 1.0), event("e2", "u1", 1.0)])
    store.put([event("e1", "u1", 2.0), event("e3", "u2", 2.0)])  # e1 delivered again
    table = store.read("g", "ACTION_INTERACTIONS")
    assert sorted(table["USER_ID"].to_pylist()) == ["u1", "u1", "u2"]
    assert set(table.column_names) == {"USER_ID", "ACTION_ID", "TIMESTAMP", "EVENT_TYPE"}
    for _ in range(20):  # past MAX_PUT_PARTS the put parts merge, and still read each event once
        store.put([event("e3", "u2", 3.0)])
    assert len(store.read("g", "ACTION_INTERACTIONS")) == 3
    assert store.erase("g", "ACTION_INTERACTIONS", "USER_ID", ["u1"]) == {"u1"}
    assert store.read("g", "ACTION_INTERACTIONS")["USER_ID"].to_pylist() == ["u2"]


def test_actions_are_upserted_by_action_id(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path)
    store.put([DatasetRecord(record_id=f"r{i}", dataset_group="g", dataset_type="ACTIONS", id="a",
                             fields={"VALUE": value}, received_at=float(i))
               for i, value in enumerate((1, 7))])
    assert store.read("g", "ACTIONS").to_pylist() == [{"ACTION_ID": "a", "VALUE": 7}]


def test_scoring_many_users_at_once_is_scoring_each(trained: tuple) -> None:
    """measure scores all test users as one matrix; serving scores one user per request."""
    model, items, actions = trained
    data, _ = action_data(actions, synthetic()[1])
    users = np.arange(0, len(data.user_ids), 7)
    many = scores_of(model, data, user_items(items, data.user_ids), users)
    for row, u in enumerate(users.tolist()):
        user = data.user_ids[u]
        np.testing.assert_allclose(many[row], propensities(model, history(items, user), model.taken(user)[0]),
                                   rtol=1e-5)
