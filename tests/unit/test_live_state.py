"""The live recurrent state the stream workers keep: stepping it event by event gives the state
serving would compute by rerunning the history, and serving scores it as it is."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_hrnn import TINY, walks

from kernel.artifact_files import Common, write_common, write_manifest
from kernel.contract import ArtifactManifest, Event
from kernel.hrnn_runtime import unpack
from serving.models import load
from stream.live_state import LiveModel, UserHistory
from stream.session import Interaction, Limits, apply
from training import hrnn
from training.trainer import user_history

ARN = "arn:aws:personalize:us-east-1:0:solution/s/v1"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole artifact directory, as the trainer writes it, of a tiny HRNN."""
    data = walks(200, seed=0)
    d = tmp_path_factory.mktemp("artifact")
    no_events = {"offsets": np.zeros(data.n_users + 1, np.int64), "items": np.zeros(0, np.int32),
                 "types": np.zeros(0, np.int32), "type_names": np.asarray([], dtype=str)}
    files = write_common(d, Common(
        item_ids=data.item_ids.tolist(), user_ids=data.user_ids.tolist(),
        user_history=user_history(data, 200), user_events=no_events,
        popularity=np.bincount(data.item, minlength=data.n_items).astype(np.float32),
        item_created=np.zeros(data.n_items, np.int64)))
    write_manifest(d, ArtifactManifest(solution_version_arn=ARN, recipe="aws-hrnn", created_at=0.0,
                                       data_cut=int(data.time.max()),
                                       files={**files, **hrnn.fit(data, TINY).export(d)}))
    return d


def click(i: int, item: str, t: float, user: str = "new-user") -> Event:
    return Event(event_id=f"e{i}", dataset_group="g", tracking_id="t", user_id=user, session_id="s",
                 event_type="click", item_id=item, sent_at=t, received_at=t)


def test_stepping_per_event_gives_the_state_serving_would_rebuild(artifact: Path) -> None:
    live, served = LiveModel(ARN, artifact), load(ARN, artifact)
    # a user from the training data, then clicks now, one with an item the model never saw, and a
    # two-hour gap (a new session: the user-level GRU steps)
    t0 = 2e9
    clicks = [click(1, "3", t0), click(2, "4", t0 + 60), click(3, "not-an-item", t0 + 90),
              click(4, "20", t0 + 7300), click(5, "21", t0 + 7360)]
    for user in ("0-5", "new-user"):
        state = None
        for e in clicks:
            state = apply(state, e.model_copy(update={"user_id": user}), live, Limits())
        assert state is not None and state.model == ARN
        past = served.history(user, state.history)
        rerun = served.user_scores(past)  # what serving computes without the live state
        np.testing.assert_allclose(served.user_scores(past, live=state), rerun, atol=1e-4)
        rebuilt = live.rebuild(user, state.history)
        np.testing.assert_allclose(unpack(state.h)[0], unpack(rebuilt)[0], atol=1e-5)
        assert unpack(state.h)[2] == t0 + 7360


def test_serving_uses_the_live_state_only_when_it_is_this_versions(artifact: Path) -> None:
    served = load(ARN, artifact)
    live = LiveModel(ARN, artifact)
    state = apply(None, click(1, "7", 2e9), live, Limits())
    other = state.__class__(**{**{f: getattr(state, f) for f in state.__slots__}, "model": "v0"})
    past = served.history("new-user", state.history)
    np.testing.assert_allclose(served.user_scores(past, live=other), served.user_scores(past), atol=0)
    hs = np.zeros_like(unpack(state.h)[0])  # a state that says nothing: scores are the item biases
    zero = state.__class__(**{**{f: getattr(state, f) for f in state.__slots__},
                              "h": (*hs.ravel().tolist(), *hs.ravel().tolist(), 2e9)})
    np.testing.assert_allclose(served.user_scores(past, live=zero), served.runtime.item_bias, atol=1e-6)
    assert past.typed() == [(served.index["7"], "click")] and past.times.tolist() == [2e9]


def test_a_users_past_is_the_trained_history_then_known_items_streamed_since() -> None:
    trained = {"offsets": np.array([0, 2]), "items": np.array([2, 0], dtype=np.int32),
               "times": np.array([10, 20])}
    history = UserHistory(["a", "b", "c"], ["u"], trained, data_cut=20)
    past = history.of("u", [Interaction("b", "click", 15.0),  # before the cut: training saw it
                            Interaction("x", "click", 30.0),  # an item the model does not know
                            Interaction("b", "purchase", 40.0)])
    assert past.codes.tolist() == [2, 0, 1] and past.times.tolist() == [10.0, 20.0, 40.0]
    assert past.typed() == [(2, ""), (0, ""), (1, "purchase")] and past.events(2) == [(1, 40.0)]
    assert len(history.of("stranger", [])) == 0


def test_filters_read_every_trained_interaction_by_type_then_those_streamed_since() -> None:
    trained = {"offsets": np.array([0, 2, 2]), "items": np.array([2, 0], dtype=np.int32),
               "times": np.array([10, 20])}
    by_type = {"offsets": np.array([0, 3, 4]), "items": np.array([2, 0, 2, 1], dtype=np.int32),
               "types": np.array([0, 1, 0, 0], dtype=np.int32), "type_names": np.array(["watch", "click"])}
    history = UserHistory(["a", "b", "c"], ["u", "watcher"], trained, data_cut=20, events=by_type)
    past = history.of("u", [Interaction("b", "purchase", 40.0)])
    assert past.typed() == [(2, "watch"), (0, "click"), (2, "watch"), (1, "purchase")]
    assert past.codes.tolist() == [2, 0, 1]  # what the model runs over is unchanged
    assert history.of("watcher", []).typed() == [(1, "watch")] and len(history.of("watcher", [])) == 0
    assert history.of("stranger", [Interaction("a", "click", 30.0)]).typed() == [(0, "click")]
