"""Deployed models: a solution version's artifact loaded for serving (numpy/onnxruntime only).

`Model.scores(...)` returns one float32 score per item of the artifact's vocabulary;
the runtime API turns them into Personalize's answer (exclusions, filters, top-k,
normalised scores). Artifacts are immutable, so a loaded model is cached by ARN for the
life of the process; UpdateCampaign loads the new one before the campaign points at it.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream.contract import ArtifactManifest
from stream.hrnn_runtime import HRNNRuntime, unpack
from stream.live_state import UserHistory
from stream.session import Interaction, SessionState


@dataclass
class Model:
    arn: str
    recipe: str
    item_ids: list[str]
    popularity: np.ndarray  # float32 interactions per item
    data_cut: int = 0  # newest interaction time the model trained on
    known: UserHistory | None = None  # each user's history as of training
    neighbours: np.ndarray | None = None  # SIMS: int32 [n_items, k], -1 pads
    similarities: np.ndarray | None = None  # SIMS: float32 [n_items, k]
    runtime: HRNNRuntime | None = None  # HRNN recipes: the ONNX step graphs and item embeddings
    created: np.ndarray | None = None  # int64 Unix seconds per item (exploration's item age)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {item: code for code, item in enumerate(self.item_ids)}

    def history(self, user_id: str, streamed: Sequence[Interaction]) -> list[Interaction]:
        """The user's interactions as of training (the artifact) followed by those streamed in
        since (the session state); what both know is counted once, by its time."""
        return self.known.of(user_id, streamed) if self.known is not None else list(streamed)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def user_scores(self, history: Sequence[Interaction], live: SessionState | None = None) -> np.ndarray:
        """USER_PERSONALIZATION: scores for a user with this history (oldest first). `live`: the
        user's session state; when the stream workers keep its recurrent state under this very
        version, that state is scored as it is (one matvec) instead of rerunning the history."""
        if self.runtime is not None and live is not None and live.model == self.arn and live.h is not None:
            return self.runtime.scores(unpack(live.h)[0])[0]
        if self.runtime is not None:
            events = [(self.index[i.item], i.ts) for i in history if i.item in self.index]
            if not events:  # a user we know nothing about: what is popular (softmax of log counts
                return np.log1p(self.popularity)  # is proportional to the counts, as scores should be)
            hs, _ = self.runtime.state_of(events[-self.runtime.max_user_history_length:])
            return self.runtime.scores(hs)[0]
        if self.recipe == "aws-sims" and history:  # SIMS asked for a user: its last item's neighbours
            code = self.index.get(history[-1].item)
            if code is not None:
                return self.related_scores(code)
        return self.popularity

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


def load(arn: str, directory: Path) -> Model:
    manifest = ArtifactManifest.model_validate_json((directory / "manifest.json").read_text())
    files = manifest.files
    known = UserHistory.load(directory, manifest)
    model = Model(arn=arn, recipe=manifest.recipe, item_ids=list(known.item_ids),
                  popularity=np.load(directory / files["popularity"]).astype(np.float32),
                  data_cut=manifest.data_cut or 0, known=known)
    if "item_created" in files:  # artifacts written before exploration lack it
        model.created = np.load(directory / files["item_created"])
    if "step" in files:
        model.runtime = HRNNRuntime(directory, files)
        assert list(model.runtime.item_ids) == model.item_ids, "HRNN vocabulary differs from the artifact's"
    if "sims_neighbours" in files:
        model.neighbours = np.load(directory / files["sims_neighbours"])
        model.similarities = np.load(directory / files["sims_scores"]).astype(np.float32)
    return model


class Models:
    """Solution version ARN -> loaded Model (artifacts never change once written)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._models: dict[str, Model] = {}
        self._lock = threading.Lock()

    def get(self, arn: str, artifact: str) -> Model:
        model = self._models.get(arn)
        if model is None:
            with self._lock:
                model = self._models.get(arn) or load(arn, self.data_dir / artifact)
                self._models[arn] = model
        return model
