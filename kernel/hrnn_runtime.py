"""The HRNN at run time: onnxruntime + numpy, no torch (what serving and stream workers load).

training/hrnn.py trains the model and exports these files; this module reads them. One
user's state is two float32 [H] vectors (h_session, h_user); every method takes a batch.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from kernel.item_features import FeatureEncoder

FILES = {"step": "hrnn_step.onnx", "user": "hrnn_user.onnx", "item_embeddings": "item_embeddings.npy",
         "item_bias": "item_bias.npy", "initial_state": "initial_state.npy",
         "weights": "hrnn_weights.npz", "config": "hrnn_config.json"}  # items: the artifact's item_ids
# optional: each artifact user's state after its history as of training (newer artifacts)
USER_STATES = "hrnn_user_states.npy"
# optional (the v2 recipes, data with context fields): the fields and their values, and a table
# Q_<field> [values + 1, H] each (row 0: a missing or unknown value), files "context" and
# "context_tables" of the manifest
CONTEXT, CONTEXT_TABLES = "hrnn_context.json", "hrnn_context.npz"
# optional (the v2 recipes): the item feature encoder (kernel.item_features), file "item_encoder",
# with which serving scores items added after training from their metadata and F_W, F_b of "weights"
ITEM_ENCODER = "hrnn_item_encoder.json"


class HRNNRuntime:
    def __init__(self, directory: Path, files: Mapping[str, str] | None = None) -> None:
        import onnxruntime as ort

        states = (files or {}).get("user_states")
        files = {**FILES, **(files or {})}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # many processes share the cores (docs/architecture.md, "Threads")
        opts.inter_op_num_threads = 1
        cpu = ["CPUExecutionProvider"]
        self._step = ort.InferenceSession(str(directory / files["step"]), opts, providers=cpu)
        self._user = ort.InferenceSession(str(directory / files["user"]), opts, providers=cpu)
        self.item_embeddings = np.load(directory / files["item_embeddings"])  # (n_items, H)
        self.item_bias = np.load(directory / files["item_bias"])  # (n_items,)
        self.n_trained = len(self.item_embeddings)  # the items the step graph reads (its E's rows)
        # the v2 recipes' item tower: metadata vector (encoder) -> embedding (F_W) and bias (F_b)
        self.encoder: FeatureEncoder | None = None
        self._tower: tuple[np.ndarray, np.ndarray] | None = None
        if "item_encoder" in files:
            self.encoder = FeatureEncoder.load(directory / files["item_encoder"])
            with np.load(directory / files["weights"]) as w:
                self._tower = w["F_W"].astype(np.float32), w["F_b"].astype(np.float32)
        self.initial_state = np.load(directory / files["initial_state"])  # (H,)
        meta = json.loads((directory / files["config"]).read_text())
        self.hidden_dimension = int(meta["hidden_dimension"])
        self.session_gap_seconds = float(meta["session_gap_seconds"])
        self.max_user_history_length = int(meta["max_user_history_length"])
        # (users, 2H): h_session | h_user per artifact user; read on demand, never copied whole
        self.user_states = np.load(directory / states, mmap_mode="r") if states else None
        self.context_fields: tuple[str, ...] = ()  # the context the model takes (DEVICE, ...)
        self._context: list[tuple[dict[str, int], np.ndarray]] = []  # per field: value -> row, Q
        if "context" in files and "context_tables" in files:
            spec = json.loads((directory / files["context"]).read_text())
            with np.load(directory / files["context_tables"]) as tables:
                for name, values in zip(spec["fields"], spec["values"], strict=True):
                    index = {v: i + 1 for i, v in enumerate(values)}
                    self._context.append((index, tables[f"Q_{name}"].astype(np.float32)))
            self.context_fields = tuple(spec["fields"])

    def context_vector(self, context: Mapping[str, str] | None) -> np.ndarray | None:
        """What a request's `context` adds to the state that scores items, (1, H): the sum of each
        context field's row for its value. Keys are the schema's field names, matched ignoring
        case and underscores (DEVICE, device); a field not given or a value the model never saw
        counts as missing. None: the model takes no context."""
        if not self._context:
            return None
        given = {k.replace("_", "").lower(): v for k, v in (context or {}).items()}
        out = np.zeros((1, self.hidden_dimension), dtype=np.float32)
        for name, (index, table) in zip(self.context_fields, self._context, strict=True):
            out += table[index.get(given.get(name.replace("_", "").lower()), 0)]  # type: ignore[arg-type]
        return out

    def with_items(self, items: pa.Table, ids: Sequence[str]) -> HRNNRuntime:
        """This model scoring `ids` too, items it never trained on, from their metadata in `items`
        (the v2 recipes: E = features . F_W, b = features . F_b, as training scores an item nobody
        interacted with). The step graph still reads only the trained items: an event on a new one
        changes no state until the next training."""
        assert self.encoder is not None and self._tower is not None, "only the v2 recipes have an item tower"
        x = self.encoder.transform(items, np.asarray(ids, dtype=object))
        out = copy.copy(self)
        out.item_embeddings = np.concatenate([self.item_embeddings, x @ self._tower[0]]).astype(np.float32)
        out.item_bias = np.concatenate([self.item_bias, x @ self._tower[1]]).astype(np.float32)
        return out

    def trained_state(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """(h_session, h_user), each (1, H), of the artifact's `user`-th user as of training."""
        assert self.user_states is not None
        row = np.asarray(self.user_states[user], dtype=np.float32)
        H = self.hidden_dimension
        return row[None, :H], row[None, H:]

    def new_state(self) -> tuple[np.ndarray, np.ndarray]:
        """(h_session, h_user), each (1, H), for a user the model knows nothing about."""
        return self.initial_state[None].copy(), np.zeros((1, self.hidden_dimension), dtype=np.float32)

    def step(self, item_codes: np.ndarray, h_session: np.ndarray, h_user: np.ndarray) -> np.ndarray:
        """Each row reads one event of the current session: h_session' (B, H)."""
        return self._step.run(None, {"item_ids": np.asarray(item_codes, dtype=np.int64),
                                     "h_session": h_session.astype(np.float32, copy=False),
                                     "h_user": h_user.astype(np.float32, copy=False)})[0]

    def end_session(self, h_session: np.ndarray, h_user: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A gap ended the session: (next session's start state, updated user state), each (B, H)."""
        s0, c = self._user.run(None, {"h_session": h_session.astype(np.float32, copy=False),
                                      "h_user": h_user.astype(np.float32, copy=False)})
        return s0, c

    def scores(self, h_session: np.ndarray) -> np.ndarray:
        """E . h + b: (B, n_items)."""
        return h_session @ self.item_embeddings.T + self.item_bias

    def scores_at(self, h: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """scores(h)[codes] for one state h (H,), scoring only those rows of E."""
        return self.item_embeddings[codes] @ h + self.item_bias[codes]

    def state_of(self, events: Iterable[tuple[int, float]],
                 start: tuple[np.ndarray, np.ndarray, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run one user's (item code, time) events, oldest first, through the model; a gap
        longer than the model's session gap ends a session (as in training). `start`
        (h_session, h_user, time of the event they follow) resumes a state computed earlier."""
        hs, hu = self.new_state() if start is None else start[:2]
        last = None if start is None else start[2]
        for code, t in events:
            if code < self.n_trained:
                hs, hu = self.advance(hs, hu, last, code, t)
                last = t
        return hs, hu

    def advance(self, hs: np.ndarray, hu: np.ndarray, last: float | None, code: int,
                t: float) -> tuple[np.ndarray, np.ndarray]:
        """One more event after one at time `last` (None: the first)."""
        if last is not None and t - last > self.session_gap_seconds:
            hs, hu = self.end_session(hs, hu)
        return self.step(np.array([code]), hs, hu), hu


def pack(hs: np.ndarray, hu: np.ndarray, last: float | None) -> tuple[float, ...]:
    """A user's recurrent state as the session state's `h` slot: h_session, h_user, last event time
    (-1 before any: JSON has no NaN)."""
    return (*hs.ravel().tolist(), *hu.ravel().tolist(), -1.0 if last is None else float(last))


def unpack(h: tuple[float, ...] | list[float]) -> tuple[np.ndarray, np.ndarray, float | None]:
    n = (len(h) - 1) // 2
    v = np.asarray(h, dtype=np.float64)
    last = None if v[-1] < 0 else float(v[-1])
    return v[:n].astype(np.float32)[None], v[n:2 * n].astype(np.float32)[None], last


def load(directory: Path, files: Mapping[str, str] | None = None) -> HRNNRuntime:
    return HRNNRuntime(directory, files)
