"""aws-hrnn: ONNX parity with torch, learning an obvious sequence, and UPDATE's new items.

Synthetic data with a known answer: each user walks the catalogue upwards (item i, then i + 1),
with a session break halfway, so a model that learned anything ranks item i + 1 first after i.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pytest

from kernel.artifact_files import COMMON
from kernel.hrnn_runtime import HRNNRuntime
from training import hrnn
from training.interactions import Interactions, from_table

ROOT = Path(__file__).resolve().parents[2]
N_ITEMS = 40
TINY = {"hidden_dimension": "32", "epochs": "12", "batch_size": "16", "learning_rate": "0.01",
        "dropout": "0.0", "recency_mask": "false", "max_user_history_length_percentile": "1.0"}


def walks(n_users: int, seed: int, start_time: int = 1_000_000,
          extra: tuple[str, str] | None = None) -> Interactions:
    """Users walking items i, i+1, ... one minute apart, with a 2-hour break after 6 events.

    extra=(a, b): after item a, the walk detours through the new item b before going on."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"USER_ID": [], "ITEM_ID": [], "TIMESTAMP": []}
    for u in range(n_users):
        first, length = int(rng.integers(0, N_ITEMS - 12)), int(rng.integers(8, 12))
        seq = [str(i) for i in range(first, first + length)]
        if extra and extra[0] in seq:
            seq.insert(seq.index(extra[0]) + 1, extra[1])
        t = start_time + u * 100_000
        for k, item in enumerate(seq):
            rows["USER_ID"].append(f"{seed}-{u}")
            rows["ITEM_ID"].append(item)
            rows["TIMESTAMP"].append(t + 60 * k + (7200 if k >= 6 else 0))
    return from_table(pa.table({"USER_ID": rows["USER_ID"], "ITEM_ID": rows["ITEM_ID"],
                                "TIMESTAMP": pa.array(rows["TIMESTAMP"], pa.int64())}))


def next_item_accuracy(model: hrnn.HRNN, data: Interactions) -> float:
    """Score each user's walk minus its last item; is the last item the top-1?"""
    off = data.offsets
    vocab = {v: i for i, v in enumerate(model.item_ids)}
    code = np.array([vocab[v] for v in data.item_ids])
    hist = [code[data.item[off[u]:off[u + 1] - 1]] for u in range(data.n_users)]
    times = [data.time[off[u]:off[u + 1] - 1] for u in range(data.n_users)]
    last = code[data.item[off[1:] - 1]]
    scores = model.score(np.arange(data.n_users), hist, times)
    return float(np.mean(scores.argmax(1) == last))


@pytest.fixture(scope="module")
def parent() -> hrnn.HRNN:
    return hrnn.fit(walks(300, seed=0), TINY)


def test_learns_an_obvious_sequence(parent: hrnn.HRNN) -> None:
    assert next_item_accuracy(parent, walks(100, seed=1)) > 0.8


def test_onnx_runtime_matches_torch_and_names_its_inputs(parent: hrnn.HRNN, tmp_path: Path) -> None:
    files = parent.export(tmp_path)
    step, user = (onnx.load(str(tmp_path / files[r])) for r in ("step", "user"))
    assert [i.name for i in step.graph.input] == ["item_ids", "h_session", "h_user"]
    assert [i.name for i in user.graph.input] == ["h_session", "h_user"]
    assert [o.name for o in user.graph.output] == ["h_session_start", "h_user_next"]

    code = {v: i for i, v in enumerate(parent.item_ids)}
    history = [np.array([code[i] for i in s]) for s in (["3", "4", "5", "6", "7"], ["20", "21"], ["9"])]
    times = [np.array([0, 60, 120, 9000, 9060]), np.array([0, 99_999]), np.array([5])]  # two session breaks
    expected = parent.score(np.arange(3), history, times)

    rt = HRNNRuntime(tmp_path, files)
    got = []
    for items, ts in zip(history, times, strict=True):
        h, c = rt.new_state()
        for k, (item, t) in enumerate(zip(items, ts, strict=True)):
            if k and t - ts[k - 1] > rt.session_gap_seconds:
                h, c = rt.end_session(h, c)
            h = rt.step(np.array([item]), h, c)
        got.append(rt.scores(h)[0])
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-4)
    batched = rt.step(np.array([1, 2]), *(np.repeat(s, 2, 0) for s in rt.new_state()))
    assert batched.shape == (2, parent.config.hidden_dimension)


def test_the_artifact_keeps_each_users_state_as_a_rerun_would_find_it(parent: hrnn.HRNN,
                                                                       tmp_path: Path) -> None:
    """Serving starts a user it has not seen from the artifact's state: the same (h_session,
    h_user) as running the user's kept history through the ONNX graphs, session breaks included."""
    lengths = [5, 0, 1, 230]  # the last is longer than the window: its latest N events count
    items = np.concatenate([np.arange(n) % len(parent.item_ids) for n in lengths]).astype(np.int32)
    times = np.concatenate([1_000 + 60 * np.arange(n) + 9_000 * (np.arange(n) // 4) for n in lengths])
    csr = {"offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), "items": items,
           "times": times.astype(np.int64)}
    files = {**parent.export(tmp_path), **parent.export_user_states(tmp_path, csr, chunk=3)}
    rt = HRNNRuntime(tmp_path, files)
    window = rt.max_user_history_length
    for user, n in enumerate(lengths):
        a = int(csr["offsets"][user])
        events = list(zip(items[a:a + n].tolist(), times[a:a + n].tolist(), strict=True))[-window:]
        expected = rt.state_of(events)
        for got, want in zip(rt.trained_state(user), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-4)
    assert HRNNRuntime(tmp_path, parent.export(tmp_path)).user_states is None  # an older artifact


def test_runtime_never_imports_torch(parent: hrnn.HRNN, tmp_path: Path) -> None:
    files = parent.export(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from pathlib import Path
        from kernel.hrnn_runtime import HRNNRuntime
        rt = HRNNRuntime(Path({str(tmp_path)!r}), {files!r})
        h, c = rt.new_state()
        rt.scores(rt.step(np.array([0]), *rt.end_session(h, c)))
        assert "torch" not in sys.modules, "the runtime imported torch"
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_update_appends_new_items_and_learns_them(parent: hrnn.HRNN, tmp_path: Path) -> None:
    old = walks(300, seed=0)
    new = walks(150, seed=2, start_time=10**9, extra=("10", "new"))
    both = from_table(pa.table({  # new rows first: the data's own item codes differ from the parent's
        "USER_ID": np.concatenate([new.user_ids[new.user], old.user_ids[old.user]]).tolist(),
        "ITEM_ID": np.concatenate([new.item_ids[new.item], old.item_ids[old.item]]).tolist(),
        "TIMESTAMP": np.concatenate([new.time, old.time])}))
    child = hrnn.fit(both, {**TINY, "update_epochs": "2"}, parent=parent, since=10**9 - 1)
    assert list(child.item_ids[:len(parent.item_ids)]) == list(parent.item_ids)
    assert list(child.item_ids[len(parent.item_ids):]) == ["new"]

    code = {v: i for i, v in enumerate(child.item_ids)}
    history = [np.array([code[i] for i in ("8", "9", "10")])]
    top5 = np.argsort(-child.score(np.arange(1), history, [np.array([0, 60, 120])])[0])[:5]
    assert code["new"] in top5
    assert child.trained_until == int(both.time.max())
    assert next_item_accuracy(child, walks(100, seed=1)) > 0.7  # the old pattern is not forgotten

    (tmp_path / COMMON["item_ids"]).write_text(json.dumps(child.item_ids.tolist()))  # the vocabulary
    reloaded = hrnn.load_for_update(tmp_path, child.export(tmp_path))
    np.testing.assert_allclose(reloaded.score(np.arange(1), history, [np.array([0, 60, 120])]),
                               child.score(np.arange(1), history, [np.array([0, 60, 120])]), atol=1e-6)


def test_update_with_no_new_events_keeps_the_parent(parent: hrnn.HRNN) -> None:
    """A scheduled UPDATE may run before any event was archived since the last one: no crash, no drift."""
    child = hrnn.fit(walks(300, seed=0), TINY, parent=parent)
    assert list(child.item_ids) == list(parent.item_ids)
    history, times = [np.array([3, 4, 5])], [np.array([0, 60, 120])]
    np.testing.assert_allclose(child.score(np.arange(1), history, times),
                               parent.score(np.arange(1), history, times), atol=1e-6)


def test_impressions_passed_over_lower_the_item_where_it_was_passed_over() -> None:
    """aws-user-personalization: after item 10, 30% of users click "bait" and 70% click 11 with bait on
    screen. Without impressions the model says P(bait | 10) ~ 0.3-0.4; with them it must say clearly less."""
    took, passed = walks(300, seed=0, extra=("10", "bait")), walks(700, seed=1)
    users = np.concatenate([took.user_ids[took.user], passed.user_ids[passed.user]]).tolist()
    items = np.concatenate([took.item_ids[took.item], passed.item_ids[passed.item]]).tolist()
    table = pa.table({"USER_ID": users, "ITEM_ID": items,
                      "TIMESTAMP": np.concatenate([took.time, passed.time])})
    before = ["", *items[:-1]]
    shown = ["11|bait" if (b, i) == ("10", "11") else None for b, i in zip(before, items, strict=True)]

    def p_bait_after_10(model: hrnn.HRNN) -> float:
        code = {v: i for i, v in enumerate(model.item_ids)}
        history = [np.array([code[i] for i in ("8", "9", "10")])]
        s = model.score(np.arange(1), history, [np.array([0, 60, 120])])
        e = np.exp(s[0] - s[0].max())
        return float(e[code["bait"]] / e.sum())

    plain = p_bait_after_10(hrnn.fit(from_table(table), TINY))
    seen = p_bait_after_10(hrnn.fit(from_table(table.append_column("IMPRESSION", pa.array(shown))), TINY))
    assert 0.25 < plain < 0.5 and seen < 0.85 * plain, (plain, seen)


def test_a_training_tells_its_curve_its_real_counts_and_how_far_into_an_epoch_it_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hrnn, "PROGRESS_EVERY_S", 0.0)
    said: list[str] = []
    data = walks(60, seed=3)  # 60 users of up to 12 events; histories cut to 5 make several segments each
    model = hrnn.fit(data, {**TINY, "epochs": "3", "max_user_history_length": "5"}, said.append)
    counts = re.fullmatch(r"FULL: [\d,]+ events of 60 users \((\d+) history segments\), .*", said[0])
    assert counts is not None and int(counts[1]) > 60, said[0]
    assert any("epoch 2/3 " in line and "% loss " in line and " ETA " in line for line in said)
    assert len(model.loss_curve) == 3 and model.loss_curve[-1] < model.loss_curve[0]
    assert model.used["epochs"] == "3" and model.used["learning_rate"] == "0.01"
    assert model.used["recency_mask"] == "false" and model.used["max_user_history_length"] == "5"


def test_the_defaults_are_the_recipes_and_an_explicit_learning_rate_sets_both_modes() -> None:
    default = hrnn.parse_params({})
    for name, param in hrnn.RECIPE_PARAMS.items():  # one source: what the control plane checks against
        value = getattr(default, name)
        assert (str(value).lower() if isinstance(value, bool) else value) == \
            (param.default if param.kind in (bool, str) else param.kind(param.default)), name
    assert (default.learning_rate, default.update_learning_rate, default.dropout) == (0.01, 0.002, 0.2)
    assert hrnn.parse_params({"learning_rate": "0.005"}).update_learning_rate == 0.005
    both = hrnn.parse_params({"learning_rate": "0.005", "update_learning_rate": "0.001"})
    assert both.update_learning_rate == 0.001
