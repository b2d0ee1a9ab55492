"""Users' HRNN state kept live by the stream workers: each event steps the deployed model's ONNX
graph once, so serving scores `E . h + b` from the state it reads instead of rerunning the
user's history per request.

The API publishes which solution version each dataset group serves (the newest HRNN version a
campaign answered with: `SessionStore.publish_live_model`); workers load that artifact
(`LiveModels.refresh`) and hand it to `session.apply` as its `Recurrent`. A state computed under
another version is rebuilt from the user's history on their next event, and serving reruns the
history itself until then, so a new version is never served a stale state.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from stream.contract import ArtifactManifest
from stream.hrnn_runtime import HRNNRuntime, pack, unpack
from stream.session import Interaction
from stream.store import SessionStore

log = logging.getLogger(__name__)
REFRESH_S = 1.0  # how soon workers follow a newly deployed version


class UserHistory:
    """Each user's last interactions as of training (the artifact's CSR arrays), merged with
    what streamed in since: the history serving and the workers both run the model over."""

    def __init__(self, item_ids: Sequence[str], user_ids: Sequence[str], csr: Mapping[str, np.ndarray],
                 data_cut: int) -> None:
        self.item_ids, self.csr, self.data_cut = item_ids, csr, data_cut
        self.users = {user: code for code, user in enumerate(user_ids)}

    def of(self, user_id: str, streamed: Sequence[Interaction]) -> list[Interaction]:
        """The user's interactions as of training, then those streamed in since (by time)."""
        past: list[Interaction] = []
        code = self.users.get(user_id)
        if code is not None:
            a, b = self.csr["offsets"][code], self.csr["offsets"][code + 1]
            past = [Interaction(self.item_ids[i], "", float(t)) for i, t in
                    zip(self.csr["items"][a:b].tolist(), self.csr["times"][a:b].tolist(), strict=True)]
        return past + [i for i in streamed if i.ts > self.data_cut]

    @classmethod
    def load(cls, directory: Path, manifest: ArtifactManifest) -> UserHistory:
        files = manifest.files
        return cls(json.loads((directory / files["item_ids"]).read_text()),
                   json.loads((directory / files["user_ids"]).read_text()),
                   dict(np.load(directory / files["user_history"])), manifest.data_cut or 0)


class LiveModel:
    """One HRNN solution version, as `session.Recurrent`."""

    def __init__(self, model: str, directory: Path) -> None:
        manifest = ArtifactManifest.model_validate_json((directory / "manifest.json").read_text())
        self.model = model
        self.runtime = HRNNRuntime(directory, manifest.files)
        self.history = UserHistory.load(directory, manifest)
        self.index = {item: code for code, item in enumerate(self.runtime.item_ids.tolist())}

    def rebuild(self, user_key: str, history: Sequence[Interaction]) -> tuple[float, ...]:
        merged = self.history.of(user_key, history)
        events = [(self.index[i.item], i.ts) for i in merged if i.item in self.index]
        events = events[-self.runtime.max_user_history_length:]
        hs, hu = self.runtime.state_of(events)
        return pack(hs, hu, events[-1][1] if events else None)

    def step(self, h: tuple[float, ...], item_id: str, ts: float) -> tuple[float, ...]:
        code = self.index.get(item_id)
        if code is None:  # an item the model does not know moves nothing, as in serving's rerun
            return h
        hs, hu, last = unpack(h)
        hs, hu = self.runtime.advance(hs, hu, last, code, ts)
        return pack(hs, hu, ts)


class LiveModels:
    """dataset group -> its LiveModel (the applier's `Live`), following what the API publishes."""

    def __init__(self, data_dir: Path, store: SessionStore) -> None:
        self.data_dir, self.store = data_dir, store
        self._by_group: dict[str, LiveModel] = {}

    def __call__(self, dataset_group: str) -> LiveModel | None:
        return self._by_group.get(dataset_group)

    async def refresh(self) -> None:
        for group, published in (await self.store.live_models()).items():
            current = self._by_group.get(group)
            if current is not None and current.model == published["model"]:
                continue
            try:  # loading reads ONNX graphs and embeddings: off the event loop
                self._by_group[group] = await asyncio.to_thread(
                    LiveModel, published["model"], self.data_dir / published["artifact"])
                log.info("dataset group %s: users' state now follows %s", group, published["model"])
            except (OSError, ValueError) as exc:  # e.g. the volume is not there yet: try again later
                log.warning("cannot load %s for live state: %s", published["model"], exc)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - the store may be briefly down; states wait
                log.warning("live models not refreshed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), REFRESH_S)
            except TimeoutError:
                pass
