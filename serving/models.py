"""Deployed models: a solution version's artifact loaded for serving (numpy/onnxruntime only).

`Model.scores(...)` returns one float32 score per item of the artifact's vocabulary;
the runtime API turns them into Personalize's answer (exclusions, filters, top-k,
normalised scores). Artifacts are immutable, so a loaded model is cached by ARN for the
life of the process; UpdateCampaign loads the new one before the campaign points at it.
"""
from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.artifact_files import read_actions, read_manifest
from kernel.artifact_store import ArtifactStore
from kernel.hrnn_runtime import HRNNRuntime, unpack
from kernel.next_best_action import ActionModel
from kernel.recipes import recipe_named
from kernel.settings import Settings
from kernel.trending import BucketCounts, counts_of, scores_at
from serving import candidates
from serving.ann import AnnIndex, load_or_build
from serving.exclusions import Exclusions
from serving.state_cache import State, StateCache, covered
from serving.work_metrics import WorkMetrics
from stream.live_state import Past, UserHistory
from stream.session import Interaction, SessionState

log = logging.getLogger(__name__)


def uncounted(source: str) -> None:
    """Where nobody counts state lookups (a model loaded outside a server)."""


@dataclass
class Model:
    arn: str
    recipe: str
    known: UserHistory  # the vocabulary, and each user's history as of training
    popularity: np.ndarray  # float32 interactions per item
    data_cut: int = 0  # newest interaction time the model trained on
    neighbours: np.ndarray | None = None  # SIMS: int32 [n_items, k], -1 pads
    similarities: np.ndarray | None = None  # SIMS: float32 [n_items, k]
    runtime: HRNNRuntime | None = None  # HRNN recipes: the ONNX step graphs and item embeddings
    created: np.ndarray | None = None  # int64 Unix seconds per item (exploration's item age)
    ann: AnnIndex | None = None  # HRNN recipes on large catalogs: approximate top-k (serving.ann)
    states: StateCache | None = None  # HRNN recipes: users' states, so requests step new events only
    state_from: Callable[[str], None] = uncounted  # told where each user_state came from (metrics)
    # Trending-Now: the artifact's bucket counts and frequency, and the scores now, the same for
    # every user (as of training once loaded; serving.trending refreshes them from the stream)
    trend_counts: BucketCounts | None = None
    trend_frequency_s: int = 0
    trend_scores: np.ndarray | None = None
    # Next-Best-Action: its actions and what it learnt of them (GetActionRecommendations); the
    # items above are then the users' item interactions, which describe them
    actions: ActionModel | None = None
    # the v2 recipes: items the ITEMS dataset gained after training are scored from their metadata
    # (serving.new_items); the trained ones are the first n_trained codes (None: no item added)
    n_trained: int | None = None

    @property
    def item_ids(self) -> Sequence[str]:
        return self.known.item_ids

    @property
    def index(self) -> dict[str, int]:
        """item id -> its code"""
        return self.known.index

    @property
    def n_items(self) -> int:
        return len(self.known.item_ids)

    @property
    def grows(self) -> bool:
        """Whether items added after training are scored from their metadata (the v2 recipes)."""
        return self.runtime is not None and self.runtime.encoder is not None

    @property
    def fresh(self) -> np.ndarray:
        """The codes of the items added after training (none for a model as trained)."""
        return np.arange(self.n_trained or self.n_items, self.n_items, dtype=np.int64)

    def history(self, user_id: str, streamed: Sequence[Interaction]) -> Past:
        """The user's interactions as of training (the artifact) followed by those streamed in
        since (the session state); what both know is counted once, by its time."""
        return self.known.of(user_id, streamed)

    def user_state(self, history: Past, user_id: str | None = None,
                   live: SessionState | None = None) -> np.ndarray | None:
        """HRNN: the session state h (1, H) after this history; None for a user with no known
        events. The one place that decides where it comes from, the first of:
        - `live`, the user's session state, when the stream workers keep its recurrent state
          under this very version (stream/live_state.py): no step of the model at all;
        - a state of this user that the history extends, stepped over the events since: this
          process's state cache, else the artifact's state as of training (`resumable`);
        - a rerun of the history's latest window.
        The last two are kept in the state cache, under the user id."""
        assert self.runtime is not None
        if live is not None and live.model == self.arn and live.h is not None:
            self.state_from("live")
            return unpack(live.h)[0]
        n = len(history)
        if not n:
            return None
        start, source = self.resumable(history, user_id)
        self.state_from(source)
        if start is not None and start.n == n:
            return start.h_session
        if start is not None:
            hs, hu = self.runtime.state_of(history.events(start.n),
                                           (start.h_session, start.h_user, start.last[1]))
        else:
            hs, hu = self.runtime.state_of(history.latest(self.runtime.max_user_history_length))
        if self.states is not None and user_id:
            self.states.put(self.arn, user_id, State(n, history.event(n - 1), hs, hu))
        return hs

    def resumable(self, history: Past, user_id: str | None) -> tuple[State | None, str]:
        """The user's cached state, else the artifact's, where `history` extends it within the
        model's window (serving.state_cache.covered), and which it was; (None, "rerun"): rerun."""
        assert self.runtime is not None
        if not user_id:
            return None, "rerun"
        cached, source = self.states.get(self.arn, user_id) if self.states is not None else None, "cache"
        if cached is None:
            cached, source = self.trained_state(user_id), "artifact"
        if covered(cached, history, self.runtime.max_user_history_length):
            return cached, source
        return None, "rerun"

    def trained_state(self, user_id: str) -> State | None:
        """The state the artifact keeps for a user it knows, after its history as of training:
        a user this process has not seen yet starts from it rather than from a rerun of up to
        N events (~30 us each). None: no such state (an older artifact, an unknown user)."""
        assert self.runtime is not None
        user = self.known.users.get(user_id)
        if self.runtime.user_states is None or user is None:
            return None
        csr = self.known.csr
        a, b = int(csr["offsets"][user]), int(csr["offsets"][user + 1])
        if a == b:
            return None
        return State(b - a, (int(csr["items"][b - 1]), float(csr["times"][b - 1])),
                     *self.runtime.trained_state(user))

    def scoring_state(self, history: Past, user_id: str | None, live: SessionState | None,
                      context: Mapping[str, str] | None) -> np.ndarray | None:
        """The state h (1, H) that scores items: user_state's plus, for a model that learnt the
        events' context (the v2 recipes), what the request's `context` adds (DEVICE: phone). A
        user with no history in a context starts from a new user's state, as training scores
        each user's first event; with no context either, None (what is popular answers)."""
        assert self.runtime is not None
        hs = self.user_state(history, user_id, live)
        q = self.runtime.context_vector(context)
        if q is None or (hs is None and not context):
            return hs
        return (self.runtime.new_state()[0] if hs is None else hs) + q

    def user_scores(self, history: Past, user_id: str | None = None,
                    live: SessionState | None = None, context: Mapping[str, str] | None = None) -> np.ndarray:
        """USER_PERSONALIZATION: scores for a user with this history (oldest first), in this
        `context` where the model takes one."""
        if self.runtime is not None:
            hs = self.scoring_state(history, user_id, live, context)
            if hs is None:  # a user we know nothing about: what is popular (softmax of log counts
                return np.log1p(self.popularity)  # is proportional to the counts, as scores should be)
            return self.runtime.scores(hs)[0]
        if self.trend_scores is not None:
            return self.trend_scores
        if recipe_named(self.recipe).model in ("sims", "similar_items", "bought_together") \
                and len(history):  # its last item's neighbours
            return self.related_scores(int(history.codes[-1]))
        return self.popularity

    def scores_of(self, codes: np.ndarray, history: Past, user_id: str | None = None,
                  live: SessionState | None = None, context: Mapping[str, str] | None = None) -> np.ndarray:
        """user_scores(...)[codes] without scoring the catalog where the model allows it
        (GetPersonalizedRanking's input items): HRNN scores only those rows of E."""
        if self.runtime is None:
            return self.user_scores(history, user_id, live)[codes]
        hs = self.scoring_state(history, user_id, live, context)
        if hs is None:  # a user we know nothing about: what is popular, as user_scores has it
            return np.log1p(self.popularity[codes])
        return self.runtime.scores_at(hs[0], codes)

    def approximate_top(self, history: Past, user_id: str | None, exclusions: Exclusions, k: int,
                        live: SessionState | None = None,
                        context: Mapping[str, str] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """The k best allowed items and their catalog-wide probabilities from the ANN index;
        None where exact scoring must answer (no index, an unknown user, too few items allowed,
        or fewer than k of them in the lists searched). O(k + history + the lists searched)."""
        if self.ann is None or self.runtime is None:
            return None
        n_allowed = exclusions.n_allowed
        if not candidates.approximable(k, n_allowed, self.n_items):
            return None
        hs = self.scoring_state(history, user_id, live, context)
        if hs is None:
            return None
        h, excluded, allowed = hs[0], exclusions.codes, exclusions.allowed
        probes = candidates.probes_for(self.ann.probes, n_allowed, self.n_items, self.ann.lists)
        bits = None if allowed is None else allowed.bits
        codes = self.ann.search(h, k, probes, exclude=excluded, allowed=bits)
        if len(codes) < k or codes[k - 1] < 0:  # -1 pads: the lists searched ran short
            return None
        codes = np.concatenate([codes, exclusions.keep(self.fresh)])  # not in the index: scored exactly
        known = np.concatenate([codes, excluded])
        scores = self.runtime.scores_at(h, known)  # exact, k + new items + history rows
        order = np.argsort(-scores[:len(codes)], kind="stable")[:k]
        probs = candidates.softmax_estimate(scores, self.ann.sample_scores(h),
                                            self.ann.in_sample(known), self.n_items)
        return codes[order], probs[order]

    def related_scores(self, code: int) -> np.ndarray:
        """RELATED_ITEMS: the item's neighbours first (by similarity), then popular items."""
        scores = self.popularity / (self.popularity.max(initial=0.0) + 1.0)
        if self.neighbours is None:
            return scores
        nb, sim = self.neighbours[code], self.similarities[code]  # type: ignore[index]
        ok = nb >= 0
        scores = scores.copy()
        scores[nb[ok]] = 1.0 + sim[ok]
        return scores


def load(arn: str, directory: Path, settings: Settings | None = None) -> Model:
    """The artifact's model; HRNN ones get a state cache and, on catalogs of at least
    `ann_min_items`, an ANN index (built on first load, then read from beside the artifact)."""
    settings = settings or Settings.model_construct()  # the defaults, not the environment
    manifest = read_manifest(directory)
    files = manifest.files
    known = UserHistory.load(directory, manifest)
    model = Model(arn=arn, recipe=manifest.recipe, known=known,
                  popularity=np.load(directory / files["popularity"]).astype(np.float32),
                  data_cut=manifest.data_cut or 0)
    if "item_created" in files:  # artifacts written before exploration lack it
        model.created = np.load(directory / files["item_created"])
    if "step" in files:
        model.runtime = HRNNRuntime(directory, files)
        model.states = StateCache(settings.state_cache_users)
        if model.n_items >= settings.ann_min_items:
            model.ann = load_or_build(directory, model.runtime.item_embeddings, model.runtime.item_bias,
                                      lists=settings.ann_lists, probes=settings.ann_probes)
    if "sims_neighbours" in files:
        model.neighbours = np.load(directory / files["sims_neighbours"])
        model.similarities = np.load(directory / files["sims_scores"]).astype(np.float32)
    if "actions" in files:
        model.actions = read_actions(directory, files)
    if "trending_buckets" in files:
        model.trend_frequency_s = int(json.loads((directory / files["trending"]).read_text())["frequency_s"])
        model.trend_counts = counts_of(np.load(directory / files["trending_buckets"]))
        model.trend_scores = scores_at(model.trend_counts, model.popularity, model.data_cut,
                                       model.trend_frequency_s)
    return model


class Models:
    """Solution version ARN -> loaded Model (artifacts never change once written)."""

    def __init__(self, data_dir: Path, settings: Settings | None = None,
                 metrics: WorkMetrics | None = None) -> None:
        self.data_dir, self.settings, self.metrics = data_dir, settings, metrics
        # where a version's artifact location is: the data dir, or OPZ_S3_BUCKET via the cache
        self.artifacts = ArtifactStore.of(settings) if settings else ArtifactStore(data_dir)
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    def get(self, arn: str, artifact: str) -> Model:
        model = self._models.get(arn)
        if model is None:
            with self._lock:
                model = self._models.get(arn)
                if model is None:
                    model = self._models[arn] = self._load(arn, artifact)
                    freeze_loaded()
        return model

    def _load(self, arn: str, artifact: str) -> Model:
        started = time.perf_counter()
        try:
            model = load(arn, self.artifacts.local(artifact), self.settings)
        except Exception:
            log.exception("loading %s from its artifact %s failed", arn, artifact)
            if self.metrics is not None:
                self.metrics.model_loaded(time.perf_counter() - started, ok=False)
            raise
        if self.metrics is not None:
            self.metrics.model_loaded(time.perf_counter() - started, ok=True)
            model.state_from = self.metrics.state_from
        return model


def freeze_loaded() -> None:
    """Leave what was just loaded for the process's life (a model, an items catalogue: millions
    of Python objects at 1M items) out of the cyclic GC's full collections, which otherwise walk
    it all: one took 103 ms in a filtered GetRecommendations at 1M items, that request's and
    the queue's behind it p99 (bench/serve.py). Garbage is collected first, so none is frozen;
    a replaced model is still freed by reference counting."""
    gc.collect()
    gc.freeze()
