"""serving.models on a synthetic HRNN artifact: the ANN path answers what exact scoring does when
it scans every list, and the state cache's resumed states equal a rerun of the history."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kernel.item_features import FeatureEncoder
from kernel.settings import Settings
from serving.ann import AnnIndex
from serving.exclusions import Allowed, Exclusions
from serving.models import Model, load
from serving.new_items import grown
from serving.ranking import normalise, top
from serving.state_cache import covered
from stream.live_state import NO_PAST, Past
from stream.session import Interaction
from training.synthetic import write_artifact

N_ITEMS = 3000


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifact(tmp_path_factory.mktemp("synthetic") / "v1", N_ITEMS, n_users=50, hidden=32)


def history(model: Model, user: str) -> Past:
    return model.history(user, [])


def test_ann_forced_on_agrees_with_exact_scoring(artifact: Path) -> None:
    settings = Settings(ann_min_items=1, ann_probes=N_ITEMS)  # every list scanned: exact answers
    model = load("arn:v1", artifact, settings)
    assert model.ann is not None and (artifact / f"ann-ivfl2-{model.ann.index.nlist}.faiss").exists()
    rng = np.random.default_rng(0)
    for u in range(20):
        past = history(model, f"u{u}")
        seen = past.codes
        filtered = Allowed.of(rng.random(N_ITEMS) < 0.3) if u % 2 else None  # a filter letting 30% through
        exclusions = Exclusions.of(N_ITEMS, seen, filtered)
        allowed = np.ones(N_ITEMS, dtype=bool) if filtered is None else filtered.mask()
        allowed[seen] = False
        assert exclusions.mask().tolist() == allowed.tolist()
        assert exclusions.n_allowed == allowed.sum()
        got = model.approximate_top(past, f"u{u}", exclusions, 25)
        assert got is not None
        scores = model.user_scores(past, f"u{u}")
        codes = top(scores, allowed, 25)
        assert got[0].tolist() == codes.tolist()
        np.testing.assert_allclose(got[1], normalise(scores, model.recipe)[codes], rtol=1e-4)


def test_a_narrow_filter_falls_back_to_exact_scoring(artifact: Path) -> None:
    model = load("arn:v1", artifact, Settings(ann_min_items=1))
    allowed = np.zeros(N_ITEMS, dtype=bool)
    allowed[:20] = True  # 20 allowed items for 25 results: the index cannot answer
    past = history(model, "u1")
    narrow = Exclusions.of(N_ITEMS, past.codes, Allowed.of(allowed))
    assert model.approximate_top(past, "u1", narrow, 25) is None
    assert model.approximate_top(NO_PAST, "nobody", Exclusions.of(N_ITEMS, []), 25) is None  # unknown user


def test_below_the_threshold_there_is_no_index(artifact: Path) -> None:
    assert load("arn:v1", artifact, Settings(ann_min_items=N_ITEMS + 1)).ann is None


def test_cached_states_resume_to_what_a_rerun_computes(artifact: Path) -> None:
    cached = load("arn:v1", artifact, Settings(ann_min_items=10**9))
    fresh = load("arn:v1", artifact, Settings(ann_min_items=10**9, state_cache_users=0))
    user = next(u for u in (f"u{n}" for n in range(50)) if 0 < len(history(cached, u)) < 100)  # resumable
    cached.user_state(history(cached, user), user)
    t, streamed = float(cached.data_cut), []
    for extra in ([("i5", t + 60)], [("i6", t + 120), ("i7", t + 10_000)]):  # the second ends a session
        streamed += [Interaction(i, "click", ts) for i, ts in extra]
        past = cached.history(user, streamed)
        assert cached.states is not None
        resumed_from = cached.states.get(cached.arn, user) or cached.trained_state(user)  # artifact first
        assert covered(resumed_from, past, 200) > 0
        np.testing.assert_allclose(cached.user_state(past, user), fresh.user_state(past, user), atol=1e-6)
        np.testing.assert_allclose(cached.user_state(past, user), rerun(cached, past), atol=1e-4)
    assert len(cached.states) == 1 and len(fresh.states) == 0  # type: ignore[arg-type]


def rerun(model: Model, past: Past) -> np.ndarray:
    """The session state from running the history's window through the ONNX graphs, from scratch."""
    assert model.runtime is not None
    return model.runtime.state_of(past.latest(model.runtime.max_user_history_length))[0]


def test_a_user_not_seen_yet_starts_from_the_state_the_artifact_keeps(artifact: Path) -> None:
    model = load("arn:v1", artifact, Settings(ann_min_items=10**9, state_cache_users=0))
    assert model.runtime is not None and model.runtime.user_states is not None
    for user in ("u0", "u7", "u33"):
        past = history(model, user)
        assert model.trained_state(user) is not None
        np.testing.assert_allclose(model.user_state(past, user), rerun(model, past), atol=1e-4)
        longer = model.history(user, [Interaction("i9", "click", float(model.data_cut) + 60)])
        np.testing.assert_allclose(model.user_state(longer, user), rerun(model, longer), atol=1e-4)
    assert model.trained_state("nobody") is None


def test_scores_of_a_few_items_are_the_catalogs_scores_of_those_items(artifact: Path) -> None:
    model = load("arn:v1", artifact, Settings(ann_min_items=10**9))
    codes = np.array([5, 0, 2999, 17, 5])
    for user, past in (("u4", history(model, "u4")), ("nobody", NO_PAST)):  # an unknown user: popularity
        np.testing.assert_allclose(model.scores_of(codes, past, user), model.user_scores(past, user)[codes],
                                   rtol=1e-5, atol=1e-6)



def test_which_sample_items_are_known_is_what_isin_says() -> None:
    sample = np.array([3, 8, 20, 41, 99])
    ann = AnnIndex(index=None, probes=1, sample=sample, sample_embeddings=np.zeros((5, 2), dtype=np.float32),
                   sample_bias=np.zeros(5, dtype=np.float32))
    for codes in ([8, 99, 100, 0, 8], [41], [], [2, 4, 200]):  # hits, repeats, misses past both ends
        codes = np.array(codes, dtype=np.int64)
        assert ann.in_sample(codes).tolist() == np.isin(sample, codes).tolist()


def test_each_state_says_where_it_came_from(artifact: Path) -> None:
    model = load("arn:v1", artifact, Settings(ann_min_items=10**9))
    said: list[str] = []
    model.state_from = said.append
    longer = model.history("u3", [Interaction("i9", "click", float(model.data_cut) + 60)])
    model.user_state(longer, "u3")  # the artifact's state as of training, stepped over one event
    model.user_state(longer, "u3")  # now this process's
    model.user_state(model.history("stranger", [Interaction("i9", "click", float(model.data_cut) + 60)]),
                     "stranger")
    assert said == ["artifact", "cache", "rerun"]


def test_items_added_after_training_are_answered_beside_the_index(artifact: Path) -> None:
    """serving.new_items: a catalogue grown after training (the v2 recipes' item tower scores the
    new items) answers on the index path what exact scoring does; an event on a new item joins
    the history, so it is not recommended again, but moves no state."""
    model = load("arn:v1", artifact, Settings(ann_min_items=1, ann_probes=N_ITEMS))
    assert model.runtime is not None and not model.grows
    items = pa.table({"ITEM_ID": ["i1", "new-a", "new-b"], "GENRES": ["x|y", "x", "y"]})
    model.runtime.encoder = FeatureEncoder.fit(items, np.asarray(["i1", "new-a", "new-b"], dtype=object))
    H = model.runtime.hidden_dimension
    tower = np.stack([np.full(H, 0.3), np.full(H, 0.2)]).astype(np.float32)
    model.runtime._tower = (tower, np.array([4.0, 3.0], np.float32))  # x and y: strong, unequal
    big = grown(model, items, now=1_700_000_000)
    assert (big.n_items, big.n_trained, model.n_items) == (N_ITEMS + 2, N_ITEMS, N_ITEMS)
    assert big.index["new-a"] == N_ITEMS
    assert big.created is None or big.created[-1] == 1_700_000_000
    for u in range(10):
        past = history(big, f"u{u}")
        exclusions = Exclusions.of(big.n_items, past.codes)
        got = big.approximate_top(past, f"u{u}", exclusions, 25)
        scores = big.user_scores(past, f"u{u}")
        allowed = exclusions.mask()
        codes = top(scores, allowed, 25)
        assert got is not None and got[0].tolist() == codes.tolist()
        assert {N_ITEMS, N_ITEMS + 1} <= set(codes.tolist())
        np.testing.assert_allclose(got[1], normalise(scores, big.recipe)[codes], rtol=1e-4)
    clicked = big.history("u1", [Interaction("new-a", "click", float(big.data_cut) + 60)])
    assert clicked.codes[-1] == N_ITEMS
    np.testing.assert_array_equal(big.user_scores(clicked, None), big.user_scores(history(big, "u1"), None))
    assert N_ITEMS in Exclusions.of(big.n_items, clicked.codes).codes
