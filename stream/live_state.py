"""Users' HRNN state kept live by the stream workers: each event steps the deployed model's ONNX
graph once, so serving scores `E . h + b` from the state it reads instead of rerunning the
user's history per request.

The API publishes which solution version each dataset group serves (the newest HRNN version a
campaign answered with: `ModelRegistry.publish`); workers load that artifact
(`LiveModels.refresh`) and hand it to `session.apply` as its `Recurrent`. A state computed under
another version is rebuilt from the user's history on their next event, and serving reruns the
history itself until then, so a new version is never served a stale state.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.artifact_files import read_item_ids, read_manifest
from kernel.artifact_store import ArtifactCorrupt, ArtifactStore
from kernel.contract import ArtifactManifest
from kernel.hrnn_runtime import HRNNRuntime, pack, unpack
from stream.model_registry import ModelRegistry
from stream.session import Interaction

log = logging.getLogger(__name__)
REFRESH_S = 1.0  # how soon workers follow a newly deployed version
# a version whose artifact failed its checksum is downloaded again only this much later: it
# does not heal by itself, and a 1M-item artifact is ~1.5 GB
CORRUPT_RETRY_S = 60.0


@dataclass(frozen=True)
class Kept:
    """A user's interactions by event type as of training (the artifact's user_events), what
    filters on Interactions read besides the events streamed since."""
    items: np.ndarray  # int item codes, oldest first
    types: np.ndarray  # int, index into names
    names: Sequence[str]  # the event types, lower-cased

    def typed(self) -> list[tuple[int, str]]:
        names = self.names
        return [(code, names[t]) for code, t in zip(self.items.tolist(), self.types.tolist(), strict=True)]


@dataclass(frozen=True)
class Past:
    """A user's interactions with items the model knows, oldest first: the artifact's (as of
    training) then those streamed in since. Codes and times stay arrays: a request reads up to
    hundreds of them for its exclusions and state, and an object per interaction was ~15% of a
    10k-item GetRecommendations' CPU."""
    codes: np.ndarray  # int64 item codes
    times: np.ndarray  # float64 Unix seconds
    types: tuple[str, ...] = ()  # event types of the last len(types), the streamed ones
    kept: Kept | None = None  # the artifact's interactions by event type; None: none kept for the user

    def __len__(self) -> int:
        return len(self.codes)

    def event(self, i: int) -> tuple[int, float]:
        """The i-th (code, time)."""
        return int(self.codes[i]), float(self.times[i])

    def events(self, start: int = 0) -> list[tuple[int, float]]:
        """(code, time) from the `start`-th on: what the HRNN runs over."""
        return list(zip(self.codes[start:].tolist(), self.times[start:].tolist(), strict=True))

    def latest(self, n: int) -> list[tuple[int, float]]:
        """The last n (code, time): the model's window."""
        return self.events(max(0, len(self.codes) - n))

    def typed(self) -> list[tuple[int, str]]:
        """(code, event type), oldest first, for filters on Interactions: the artifact's
        interactions of every event type, then those streamed since. An artifact that keeps no
        types (manifest version 1) gives its history with the type ""."""
        streamed = list(zip(self.codes[len(self.codes) - len(self.types):].tolist(), self.types, strict=True))
        if self.kept is not None:
            return self.kept.typed() + streamed
        return [(code, "") for code in self.codes[:len(self.codes) - len(self.types)].tolist()] + streamed


NO_PAST = Past(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))


class UserHistory:
    """Each user's last interactions as of training (the artifact's CSR arrays), merged with
    what streamed in since: the history serving and the workers both run the model over, and
    (`events`, where the artifact has them) the user's interactions by event type, which
    filters read."""

    def __init__(self, item_ids: Sequence[str], user_ids: Sequence[str], csr: Mapping[str, np.ndarray],
                 data_cut: int, events: Mapping[str, np.ndarray] | None = None) -> None:
        self.item_ids, self.data_cut = item_ids, data_cut
        self.csr = {"offsets": csr["offsets"], "items": csr["items"].astype(np.int64),
                    "times": csr["times"].astype(np.float64)}
        self.events = None if events is None else {
            "offsets": events["offsets"], "items": events["items"], "types": events["types"],
            "names": events["type_names"].tolist()}
        self.user_ids = user_ids  # the artifact's users, in their codes' order
        self.users = {user: code for code, user in enumerate(user_ids)}
        self.index = {item: code for code, item in enumerate(item_ids)}

    def of(self, user_id: str, streamed: Sequence[Interaction]) -> Past:
        """The user's interactions as of training, then those streamed in since (by time)."""
        codes, times = NO_PAST.codes, NO_PAST.times
        user = self.users.get(user_id)
        if user is not None:
            a, b = self.csr["offsets"][user], self.csr["offsets"][user + 1]
            codes, times = self.csr["items"][a:b], self.csr["times"][a:b]
        kept = self.kept_of(user)
        new = [(code, i.ts, i.type) for i in streamed
               if i.ts > self.data_cut and (code := self.index.get(i.item)) is not None]
        if not new:
            return Past(codes, times, kept=kept)
        more_codes, more_times, types = zip(*new, strict=True)
        return Past(np.concatenate([codes, np.array(more_codes, dtype=np.int64)]),
                    np.concatenate([times, np.array(more_times, dtype=np.float64)]), types, kept)

    def with_items(self, ids: Sequence[str]) -> UserHistory:
        """The same users' histories over a vocabulary with `ids` appended (items added after
        training that a model scores from their metadata), so events on them join histories."""
        out = copy.copy(self)
        out.item_ids = [*self.item_ids, *ids]
        out.index = self.index | {item: len(self.item_ids) + i for i, item in enumerate(ids)}
        return out

    def kept_of(self, user: int | None) -> Kept | None:
        """The user's interactions by event type as of training (views, no copy)."""
        if self.events is None or user is None:
            return None
        a, b = self.events["offsets"][user], self.events["offsets"][user + 1]
        return Kept(self.events["items"][a:b], self.events["types"][a:b], self.events["names"])

    @classmethod
    def load(cls, directory: Path, manifest: ArtifactManifest, by_type: bool = True) -> UserHistory:
        """`by_type`: also the users' interactions by event type, which only filters read."""
        files = manifest.files
        events = dict(np.load(directory / files["user_events"])) \
            if by_type and "user_events" in files else None
        return cls(read_item_ids(directory, files),
                   json.loads((directory / files["user_ids"]).read_text()),
                   dict(np.load(directory / files["user_history"])), manifest.data_cut or 0, events)


class LiveModel:
    """One HRNN solution version, as `session.Recurrent`."""

    def __init__(self, model: str, directory: Path) -> None:
        manifest = read_manifest(directory)
        self.model = model
        self.runtime = HRNNRuntime(directory, manifest.files)
        self.history = UserHistory.load(directory, manifest, by_type=False)

    def rebuild(self, user_key: str, history: Sequence[Interaction]) -> tuple[float, ...]:
        past = self.history.of(user_key, history)
        events = past.latest(self.runtime.max_user_history_length)
        hs, hu = self.runtime.state_of(events)
        return pack(hs, hu, events[-1][1] if events else None)

    def step(self, h: tuple[float, ...], item_id: str, ts: float) -> tuple[float, ...]:
        code = self.history.index.get(item_id)
        if code is None:  # an item the model does not know moves nothing, as in serving's rerun
            return h
        hs, hu, last = unpack(h)
        hs, hu = self.runtime.advance(hs, hu, last, code, ts)
        return pack(hs, hu, ts)


class LiveModels:
    """dataset group -> its LiveModel (the applier's `Live`), following what the API publishes."""

    def __init__(self, data_dir: Path, registry: ModelRegistry,
                 artifacts: ArtifactStore | None = None) -> None:
        self.data_dir, self.registry = data_dir, registry
        self.artifacts = artifacts or ArtifactStore(data_dir)  # the data dir's, or OPZ_S3_BUCKET's
        self._by_group: dict[str, LiveModel] = {}
        self._corrupt_until: dict[str, float] = {}  # model ARN -> when to try its artifact again

    def __call__(self, dataset_group: str) -> LiveModel | None:
        return self._by_group.get(dataset_group)

    async def refresh(self) -> None:
        """Load what is newly published; forget the models of dataset groups that no longer
        publish one (deleted ones)."""
        published_now = await self.registry.published()
        for group in set(self._by_group) - set(published_now):
            del self._by_group[group]
        for group, published in published_now.items():
            current = self._by_group.get(group)
            if current is not None and current.model == published["model"]:
                continue
            if self._corrupt_until.get(str(published["model"]), 0.0) > time.monotonic():
                continue
            try:  # loading (a download, then ONNX graphs and embeddings): off the event loop
                self._by_group[group] = await asyncio.to_thread(self._load, published)
                log.info("dataset group %s: users' state now follows %s", group, published["model"])
            except ArtifactCorrupt as exc:
                self._corrupt_until[str(published["model"])] = time.monotonic() + CORRUPT_RETRY_S
                log.error("cannot load %s for live state: %s", published["model"], exc)
            except (OSError, ValueError) as exc:  # e.g. the volume is not there yet: try again later
                log.warning("cannot load %s for live state: %s", published["model"], exc)

    def _load(self, published: Mapping[str, object]) -> LiveModel:
        return LiveModel(str(published["model"]), self.artifacts.local(str(published["artifact"])))

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
