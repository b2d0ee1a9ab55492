"""aws-hrnn: the recipe's training. Hyperparameters -> sequences and lanes (numpy) -> the training
loop (FULL, and UPDATE's fine-tune of a parent) -> HRNN, the trained model (a Scorer), which writes
the artifact serving reads.

The network and its loss are training/hrnn_net.py; the ONNX graphs that kernel/hrnn_runtime.py
(onnxruntime + numpy, no torch) runs for serving are training/hrnn_onnx.py. Training lays users'
sequences end to end in session-parallel lanes (GRU4Rec-style) and trains with truncated BPTT and a
softmax over the catalog at every position. torch is imported only inside the functions here.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from kernel.artifact_files import read_item_ids
from kernel.hrnn_runtime import CONTEXT, CONTEXT_TABLES, FILES, ITEM_ENCODER, USER_STATES
from kernel.item_features import FeatureEncoder
from kernel.recipes import recipe_named
from training.hrnn_net import (
    NEW_SESSION,
    NEW_USER,
    PAD,
    SAME_SESSION,
    Weights,
    add_metadata,
    context_vector,
    effective,
    grow,
    init_weights,
    loss_fn,
    start_state,
    unroll,
    with_context,
)
from training.hrnn_onnx import step_graph, user_graph
from training.interactions import Interactions

if TYPE_CHECKING:
    import torch

RECIPE_PARAMS = recipe_named("aws-hrnn").hyperparameters  # Personalize's names and the defaults
METADATA = "hrnn_metadata.npz"  # v2: the items' metadata vectors and which were warm
PROGRESS_EVERY_S = 10.0  # how often a training says how far into an epoch it is


# ----------------------------------------------------------------------------- hyperparameters

@dataclass(frozen=True)
class HRNNConfig:
    """Personalize's names first, whose defaults are the recipe's (kernel/recipes.py: one source,
    which the control plane checks requests against), then our training knobs. Built by
    `parse_params` from the strings Personalize passes."""
    hidden_dimension: int  # also the item embedding size (tied)
    bptt: int  # steps of truncated backpropagation through time
    recency_mask: bool  # weight recent events more in the loss (Personalize: "latest trends")
    min_user_history_length_percentile: float  # users below it are not trained on
    max_user_history_length_percentile: float  # ... nor above it (bots, noise)
    max_user_history_length: int  # a user's last N events are trained on and scored from
    session_gap_seconds: float  # inactivity that ends a session
    epochs: int  # 0: by data size (epochs_for)
    learning_rate: float  # Adam's peak, cosine to 10% (the choices measured: docs/training.md)
    dropout: float  # on item embeddings and on the state scored
    batch_size: int = 64  # parallel lanes: user sequences laid end to end
    negatives: int = 16384  # full softmax up to this many items, else this many sampled negatives
    # UPDATE: a fine-tune's peak, lower than FULL's so it does not forget; an explicit
    # learning_rate sets both
    update_learning_rate: float = 0.002
    update_epochs: int = 1  # UPDATE: passes over new events plus the replay sample
    replay_fraction: float = 1.0  # UPDATE: replayed older events per new event
    # v2 recipes: the share of warm items scored from their metadata alone at each step
    metadata_dropout: float = 0.2
    seed: int = 0


def parse_params(params: Mapping[str, str] | None) -> HRNNConfig:
    """Personalize passes strings; names we do not know (e.g. exploration_weight) are not ours to check.
    What is not given is the recipe's default."""
    given = {**(params or {})}
    if "learning_rate" in given:
        given.setdefault("update_learning_rate", given["learning_rate"])
    out: dict[str, object] = {}
    for f in fields(HRNNConfig):
        raw = str(given[f.name]).strip() if f.name in given else RECIPE_PARAMS[f.name].default \
            if f.name in RECIPE_PARAMS else None
        if raw is None:
            continue  # a knob of ours: its default above
        if f.type == "bool":
            if raw.lower() not in ("true", "false"):
                raise ValueError(f"hyperparameter {f.name}={raw!r} is not true or false")
            out[f.name] = raw.lower() == "true"
        else:
            out[f.name] = (int if f.type == "int" else float)(float(raw) if f.type == "int" else raw)
    return HRNNConfig(**out)  # type: ignore[arg-type]


def epochs_for(cfg: HRNNConfig, n_events: int) -> int:
    """Fewer passes over big data: about 800k event-visits in all (10 on ml-100k), 4 to 30 passes."""
    return cfg.epochs or int(np.clip(round(8e5 / max(n_events, 1)), 4, 30))


# ----------------------------------------------------------------------------- sequences and lanes

def session_flags(user: np.ndarray, t: np.ndarray, gap: float) -> np.ndarray:
    """Per event (rows sorted by user, then time): NEW_USER, NEW_SESSION (after > gap s) or SAME_SESSION."""
    flags = np.full(len(user), SAME_SESSION, dtype=np.int8)
    if len(user):
        flags[1:][np.diff(t) > gap] = NEW_SESSION
        flags[np.r_[True, user[1:] != user[:-1]]] = NEW_USER
    return flags


def training_rows(data: Interactions, cfg: HRNNConfig) -> np.ndarray:
    """Row mask: users within the history-length percentiles."""
    off = data.offsets
    lengths = np.diff(off)
    keep_user = lengths > 0
    if keep_user.any():
        lo, hi = np.quantile(lengths[keep_user], [cfg.min_user_history_length_percentile,
                                                  cfg.max_user_history_length_percentile])
        keep_user &= (lengths >= math.floor(lo)) & (lengths <= math.ceil(hi))
    return keep_user[data.user]


def pieces(r: np.ndarray, n: int) -> list[np.ndarray]:
    """A user's rows cut into runs of at most n from the newest back: no run reads more than n events."""
    return [r[max(0, e - n):e] for e in range(len(r), 0, -n)]


def recency_weights(t: np.ndarray, on: bool) -> np.ndarray:
    """Loss weight per event, 0.5 (oldest) to 1.5 (newest) by time quantile; mean 1, so no lr retune."""
    if not on or len(t) < 2:
        return np.ones(len(t), dtype=np.float32)
    rank = np.argsort(np.argsort(t, kind="stable"), kind="stable")
    return (0.5 + rank / (len(t) - 1)).astype(np.float32)


def lanes(users: list[np.ndarray], n_lanes: int, rng: np.random.Generator) -> np.ndarray:
    """Lay shuffled user segments end to end and cut into n_lanes equal rows: row indices [B, L].

    Each lane is a stream of whole users, so a step only needs a state reset where a user starts
    (GRU4Rec's session-parallel mini-batches); -1 pads the end of the last lanes."""
    order = np.concatenate([users[u] for u in rng.permutation(len(users))]) if users else np.zeros(0, int)
    n_lanes = max(1, min(n_lanes, len(order)))
    width = -(-len(order) // n_lanes)
    out = np.full(n_lanes * width, -1, dtype=np.int64)
    out[:len(order)] = order
    return out.reshape(n_lanes, width)


# ----------------------------------------------------------------------------- training

def _threads() -> None:
    """torch's threads wait on each other at every step: where something else has a core, a step
    waits for the thread that lost its time slice, and 2 threads on a busy 2-core machine trained
    several times slower than 1 (docs/training.md). So a training takes the cores of its affinity
    that are free as it starts (by the load average), at least one."""
    import torch
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cores = len(affinity) if affinity else os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    torch.set_num_threads(max(1, min(cores, round(cores - busy))))


def train(w: Weights, cfg: HRNNConfig, *, item: np.ndarray, flags: np.ndarray, weight: np.ndarray,
          users: list[np.ndarray], epochs: int, peak: float, what: str,
          progress: Callable[[str], None] | None = None, shown: np.ndarray | None = None,
          checkpoint: Callable[[], None] | None = None, metadata: Metadata | None = None,
          context: tuple[tuple[str, ...], np.ndarray] | None = None) -> list[float]:
    """Adam over `epochs` passes of lanes, state carried across BPTT windows (detached), lr on a cosine;
    the mean loss of each epoch (the training curve). `checkpoint` runs before every step: it raises to
    stop the training (a shutdown, a stop). An epoch can take minutes on a busy machine, so `progress`
    also hears how far into one it is, every PROGRESS_EVERY_S. `metadata`: the v2 recipes' item
    features, through which every step sees the items (hrnn_net.effective). `context`: the v2
    recipes' context fields and each row's codes [N, F], whose tables (Q_<field>) are added to
    the state that scores each event (hrnn_net.context_vector)."""
    import torch
    flags = flags.copy()
    flags[[seg[0] for seg in users]] = NEW_USER  # a segment cut from a longer history starts cold
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.Adam(w.values(), lr=peak)
    popularity = torch.from_numpy(np.bincount(item, minlength=w["E"].shape[0]).astype(np.float32) + 1.0)
    started, curve = time.monotonic(), []
    said = started
    width = -(-sum(map(len, users)) // cfg.batch_size)  # lane length, as lanes() cuts it
    total_steps, step = max(1, epochs * -(-width // cfg.bptt)), 0
    for epoch in range(epochs):
        rows = lanes(users, cfg.batch_size, rng)  # (B, L) row indices
        f = np.where(rows >= 0, flags[rows], PAD).astype(np.int8)
        f[:, 0] = np.where(rows[:, 0] >= 0, NEW_USER, PAD)  # a lane may start mid-user
        it = torch.from_numpy(np.where(rows >= 0, item[rows], -1).astype(np.int64))
        wt = torch.from_numpy(np.where(rows >= 0, weight[rows], 0.0).astype(np.float32))
        sh = None if shown is None else torch.from_numpy(  # (B, L, K)
            np.where(rows[..., None] >= 0, shown[np.maximum(rows, 0)], -1).astype(np.int64))
        cx = None if context is None else torch.from_numpy(  # (B, L, F), 0: missing
            np.where(rows[..., None] >= 0, context[1][np.maximum(rows, 0)], 0).astype(np.int64))
        h, c = start_state(w, len(rows))
        total, count = 0.0, 0
        for s in range(0, rows.shape[1], cfg.bptt):
            if checkpoint:
                checkpoint()
            win = slice(s, s + cfg.bptt)
            wv = w if metadata is None else effective(w, metadata.features_t, metadata.warm_t,
                                                      cfg.metadata_dropout)
            out, h, c = unroll(wv, it[:, win], f[:, win], h.detach(), c.detach(), cfg.dropout)
            if cx is not None and context is not None:  # the event's context, for scoring it only
                out = out + context_vector(wv, context[0], cx[:, win])
            valid = it[:, win] >= 0  # (B, T)
            loss = loss_fn(wv, out[valid], it[:, win][valid], wt[:, win][valid], cfg.negatives, popularity,
                           cfg.dropout, None if sh is None else sh[:, win][valid])
            for group in opt.param_groups:  # cosine decay to 10%: the last epochs settle instead of wander
                group["lr"] = peak * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step / total_steps, 1.0))))
            step += 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * int(valid.sum()), count + int(valid.sum())
            if progress and time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()
                progress(f"{what} epoch {epoch + 1}/{epochs} {100 * (s + cfg.bptt) / rows.shape[1]:.0f}% "
                         f"loss {total / max(count, 1):.4f} {eta(said - started, step, total_steps)}")
        curve.append(total / max(count, 1))
        if progress:
            said = time.monotonic()
            progress(f"{what} epoch {epoch + 1}/{epochs} loss {curve[-1]:.4f} "
                     f"{eta(said - started, step, total_steps)}")
    return curve


def eta(spent: float, step: int, total_steps: int) -> str:
    """"12.3s ETA 45s": time so far and what the remaining steps take at the rate so far."""
    return f"{spent:.1f}s ETA {spent / max(step, 1) * (total_steps - step):.0f}s"


def fit(data: Interactions, params: Mapping[str, str] | None = None,
        progress: Callable[[str], None] | None = None, parent: HRNN | None = None,
        since: int | None = None, checkpoint: Callable[[], None] | None = None,
        items: pa.Table | None = None, textual: str | None = None) -> HRNN:
    """FULL (parent None): train from scratch. UPDATE: the parent's weights and vocabulary, new items
    appended (mean embedding + noise, mean bias), fine-tuned on the events after `since` (default: the
    parent's last training event) plus as many replayed older events, each with its user's recent context.
    `items` (the v2 recipes): the ITEMS dataset, whose metadata becomes part of every item's
    embedding, so items nobody interacted with are scored too (`textual`: its textual field). An
    UPDATE reads the catalogue with its parent's encoder, so the item tower it learnt still fits."""
    _threads()
    cfg = parse_params({**(parent.params if parent else {}), **(params or {})})
    if parent is not None and cfg.hidden_dimension != parent.config.hidden_dimension:
        raise ValueError(f"UPDATE keeps the parent's hidden_dimension {parent.config.hidden_dimension}")
    vocab = parent.item_ids if parent is not None else data.item_ids
    known = {v: i for i, v in enumerate(vocab)}
    new_ids = [v for v in data.item_ids if v not in known]
    vocab = np.concatenate([vocab, np.asarray(new_ids, dtype=object)]) if new_ids else vocab
    known.update({v: len(known) + i for i, v in enumerate(new_ids)})
    code = np.array([known[v] for v in data.item_ids], dtype=np.int64)
    item = code[data.item] if len(data) else np.zeros(0, np.int64)  # data rows in the model's vocabulary
    shown = None if data.impressions is None else np.where(data.impressions >= 0,
                                                           code[np.maximum(data.impressions, 0)], -1)

    rows = training_rows(data, cfg)
    encoder = parent.metadata.encoder if parent is not None and parent.metadata is not None else None
    metadata = Metadata.of(items, vocab, np.bincount(item[rows], minlength=len(vocab)) > 0, textual, encoder)
    flags = session_flags(data.user, data.time, cfg.session_gap_seconds)
    weight = recency_weights(data.time, cfg.recency_mask)
    off = data.offsets
    if parent is None:
        w = init_weights(len(vocab), cfg.hidden_dimension, cfg.seed)
        since = None
        per_user = [np.flatnonzero(rows[off[u]:off[u + 1]]) + off[u] for u in range(data.n_users)]
        segments = [p for r in per_user for p in pieces(r, cfg.max_user_history_length)]
        epochs, peak, what = epochs_for(cfg, int(rows.sum())), cfg.learning_rate, "FULL"
    else:
        w = grow(parent.weights, len(vocab), cfg.seed)
        if metadata is not None and parent.metadata is not None:  # warm stays warm
            metadata = metadata.warmer(parent.metadata.warm)
        since = parent.trained_until if since is None else since
        segments = update_segments(data, rows, since, cfg, np.random.default_rng(cfg.seed))
        epochs, peak, what = cfg.update_epochs, cfg.update_learning_rate, "UPDATE"
    if metadata is not None and w.get("F_W", np.zeros((0, 0))).shape[0] != metadata.features.shape[1]:
        w = add_metadata(w, metadata.features.shape[1], cfg.seed)  # new, or the catalogue's fields changed
    elif metadata is None:
        w = {k: v for k, v in w.items() if k not in ("F_W", "F_b")}
    context, context_codes = Context.of(data, parent.context if parent is not None else None)
    w = with_context(w, context.fields if context else (), context.sizes if context else ())
    segments = [s for s in segments if len(s)]
    if progress:
        users = len(np.unique(data.user[[s[0] for s in segments]])) if segments else 0
        cut = f" ({len(segments):,} history segments)" if len(segments) != users else ""
        progress(f"{what}: {sum(map(len, segments)):,} events of {users:,} users{cut}, "
                 f"{len(vocab):,} items ({len(new_ids):,} new), {epochs} epochs"
                 + ("" if shown is None else f", {int((shown >= 0).any(1).sum()):,} with impressions")
                 + ("" if context is None else f", context {', '.join(context.fields)}"))
    curve = []
    if segments:
        curve = train(w, cfg, item=item, flags=flags, weight=weight, users=segments, epochs=epochs, peak=peak,
                      what=what, progress=progress, shown=shown, checkpoint=checkpoint, metadata=metadata,
                      context=None if context is None or context_codes is None else (context.fields,
                                                                                     context_codes))
    elif progress:  # an UPDATE with nothing archived since its parent: same weights, same answers
        progress(f"{what}: no new events since the parent; weights kept")
    until = int(data.time.max()) if len(data) else (parent.trained_until if parent else 0)
    model = HRNN(vocab, {k: v.detach() for k, v in w.items()}, {**(parent.params if parent else {}),
                 **{k: str(v) for k, v in (params or {}).items()}}, until, metadata, context)
    model.loss_curve = curve
    model.used = used_params(cfg, epochs if segments else 0, peak)
    return model


def used_params(cfg: HRNNConfig, epochs: int, peak: float) -> dict[str, str]:
    """The hyperparameters a training ran with: the epochs "0: by data size" became, and the
    learning rate of this mode (FULL's, or UPDATE's fine-tune)."""
    out = {f.name: str(getattr(cfg, f.name)).lower() if f.type == "bool" else str(getattr(cfg, f.name))
           for f in fields(HRNNConfig)}
    return out | {"epochs": str(epochs), "learning_rate": str(peak)}


def update_segments(data: Interactions, rows: np.ndarray, since: int, cfg: HRNNConfig,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Per user with new events: those plus `bptt` earlier events of context (which rebuild the state).
    Then older users' recent windows, sampled until replayed events ~ replay_fraction x new events."""
    off = data.offsets
    new = rows & (data.time > since)
    segs, n_new = [], 0
    for u in np.flatnonzero(np.bincount(data.user[new], minlength=data.n_users)):
        r = np.flatnonzero(rows[off[u]:off[u + 1]]) + off[u]
        first = np.searchsorted(r, np.flatnonzero(new[off[u]:off[u + 1]])[0] + off[u])
        segs += pieces(r[max(0, first - cfg.bptt):], cfg.max_user_history_length)
        n_new += len(r) - first
    budget = cfg.replay_fraction * n_new
    for u in rng.permutation(data.n_users):
        if budget <= 0:
            break
        r = np.flatnonzero(rows[off[u]:off[u + 1]]) + off[u]
        if len(r) and not new[off[u]:off[u + 1]].any():
            segs.append(r[-2 * cfg.bptt:])
            budget -= len(segs[-1])
    return segs


# ----------------------------------------------------------------------------- item metadata (v2)

@dataclass
class Metadata:
    """The v2 recipes' item side: each item's metadata vector (kernel.item_features), the encoder
    that made them (serving encodes items added after training with it), and whether each item
    was interacted with in training (warm: it has an embedding of its own besides its metadata's)."""
    features: np.ndarray  # float32 [items, d]
    warm: np.ndarray  # bool [items]
    encoder: FeatureEncoder | None = None  # None: an artifact written before encoders were kept

    @classmethod
    def of(cls, items: pa.Table | None, vocab: np.ndarray, warm: np.ndarray, textual: str | None = None,
           encoder: FeatureEncoder | None = None) -> Metadata | None:
        """None where the catalogue says nothing usable (no ITEMS rows, no field to learn from).
        `encoder`: a parent's, else one fitted on `items`."""
        if items is None:
            return None
        encoder = encoder or FeatureEncoder.fit(items, vocab, textual)
        features = encoder.transform(items, vocab)
        return cls(features, warm, encoder) if features.shape[1] else None

    def warmer(self, warm: np.ndarray) -> Metadata:
        """With the items warm in `warm` (a parent's, for the vocabulary's first len(warm)) warm too."""
        out = self.warm.copy()
        out[:len(warm)] |= warm
        return Metadata(self.features, out, self.encoder)

    @property
    def features_t(self) -> torch.Tensor:
        import torch
        return torch.from_numpy(self.features)

    @property
    def warm_t(self) -> torch.Tensor:
        import torch
        return torch.from_numpy(self.warm.astype(np.float32))

    def save(self, directory: Path) -> dict[str, str]:
        np.savez(directory / METADATA, features=self.features, warm=self.warm)
        if self.encoder is None:
            return {"metadata": METADATA}
        self.encoder.save(directory / ITEM_ENCODER)
        return {"metadata": METADATA, "item_encoder": ITEM_ENCODER}

    @classmethod
    def load(cls, directory: Path, files: Mapping[str, str]) -> Metadata | None:
        path = directory / files.get("metadata", METADATA)
        if not path.exists():
            return None
        kept = directory / files.get("item_encoder", ITEM_ENCODER)
        encoder = FeatureEncoder.load(kept) if kept.exists() else None
        with np.load(path) as z:
            return cls(z["features"], z["warm"], encoder)


# ----------------------------------------------------------------------------- event context (v2)

@dataclass
class Context:
    """The v2 recipes' context: the INTERACTIONS fields each event's context has (DEVICE, ...) and
    each one's values, value i having row i + 1 of its table Q_<field> (row 0: missing/unknown)."""
    fields: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    @classmethod
    def of(cls, data: Interactions, parent: Context | None) -> tuple[Context | None, np.ndarray | None]:
        """The context of `data`'s rows and their codes [N, F] in it; a parent's (UPDATE) values
        keep their rows, new ones come after them. (None, None): the rows have no context."""
        if data.context is None or not data.context_fields:
            return None, None
        had = dict(zip(parent.fields, parent.values, strict=True)) if parent is not None else {}
        codes = np.zeros(data.context.shape, dtype=np.int32)
        values = []
        for j, name in enumerate(data.context_fields):
            vocab = list(had.get(name, ()))
            index = {v: i for i, v in enumerate(vocab)}
            for v in data.context_values[j]:
                if v not in index:
                    index[v] = len(vocab)
                    vocab.append(v)
            mapping = np.array([0, *(index[v] + 1 for v in data.context_values[j])], dtype=np.int32)
            codes[:, j] = mapping[data.context[:, j]]
            values.append(tuple(vocab))
        return cls(tuple(data.context_fields), tuple(values)), codes

    def codes(self, context: Mapping[str, str] | None) -> np.ndarray:
        """A request's context (field names matched ignoring case and underscores) as codes [F]."""
        given = {k.replace("_", "").lower(): v for k, v in (context or {}).items()}
        out = np.zeros(len(self.fields), dtype=np.int64)
        for j, (name, values) in enumerate(zip(self.fields, self.values, strict=True)):
            value = given.get(name.replace("_", "").lower())
            out[j] = values.index(value) + 1 if value in values else 0
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"fields": list(self.fields), "values": [list(v) for v in self.values]}))

    @classmethod
    def load(cls, path: Path) -> Context | None:
        if not path.exists():
            return None
        spec = json.loads(path.read_text())
        return cls(tuple(spec["fields"]), tuple(tuple(v) for v in spec["values"]))


# ----------------------------------------------------------------------------- the trained model

class HRNN:
    """A trained HRNN: the vocabulary, torch weights and the hyperparameters it was trained with."""

    def __init__(self, item_ids: np.ndarray, weights: Weights, params: dict[str, str], trained_until: int,
                 metadata: Metadata | None = None, context: Context | None = None):
        self.item_ids = item_ids  # code -> ITEM_ID, the model's vocabulary
        self.weights = weights
        self.context = context  # v2: the events' context fields, whose tables Q_<field> weights has
        self.metadata = metadata  # v2: the items' metadata, part of their embeddings
        self.params = params
        self.config = parse_params(params)
        self.trained_until = trained_until  # the last event time it learned from (UPDATE's default `since`)
        self.loss_curve: list[float] = []  # mean loss per epoch of the training that made it
        self.used: dict[str, str] = {}  # the hyperparameters that training resolved and ran with

    @property
    def served(self) -> Weights:
        """The weights as serving uses them: each item's embedding and bias with its metadata's part."""
        if self.metadata is None:
            return self.weights
        return effective(self.weights, self.metadata.features_t, self.metadata.warm_t)

    def state(self, history: list[np.ndarray], history_time: list[np.ndarray]) -> torch.Tensor:
        """Session state after each user's last N events, sessions split by the gap: (U, H)."""
        return self.states(history, history_time)[0]

    def states(self, history: list[np.ndarray],
               history_time: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(session state, user state) after each user's last N events: (U, H) each."""
        import torch
        w, cfg, n = self.served, self.config, self.config.max_user_history_length
        hist = [np.asarray(h, dtype=np.int64)[-n:] for h in history]
        times = [np.asarray(t, dtype=np.int64)[-n:] for t in history_time]
        T = max((len(h) for h in hist), default=0)
        items = np.full((len(hist), T), -1, dtype=np.int64)
        flags = np.full((len(hist), T), PAD, dtype=np.int8)
        for i, (h, t) in enumerate(zip(hist, times, strict=True)):
            items[i, :len(h)] = h
            flags[i, :len(h)] = session_flags(np.zeros(len(h), np.int32), t, cfg.session_gap_seconds)
        with torch.no_grad():
            h, c = start_state(w, len(hist))
            _, h, c = unroll(w, torch.from_numpy(items), flags, h, c, keep=False)
        return h, c

    def export_user_states(self, directory: Path, csr: Mapping[str, np.ndarray],
                           chunk: int = 1024) -> dict[str, str]:
        """Each artifact user's (session, user) state after its history as the artifact keeps it
        (`csr`: user_history's offsets, items, times): serving starts from these instead of
        rerunning up to N events per user it has not seen yet. Users without history get the
        unknown user's start. float32 (users, 2H), memory-mapped at load."""
        off, items, times = csr["offsets"], csr["items"], csr["times"]
        H = int(self.weights["E"].shape[1])
        out = np.lib.format.open_memmap(directory / USER_STATES, mode="w+", dtype=np.float32,
                                        shape=(len(off) - 1, 2 * H))
        for a in range(0, len(off) - 1, chunk):
            users = range(a, min(a + chunk, len(off) - 1))
            h, c = self.states([items[off[u]:off[u + 1]] for u in users],
                               [times[off[u]:off[u + 1]] for u in users])
            out[a:a + len(users)] = np.concatenate([h.numpy(), c.numpy()], axis=1)
        out.flush()
        return {"user_states": USER_STATES}

    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray], context: Mapping[str, str] | None = None) -> np.ndarray:
        """E . h + b for every item, h the state after the history (assumes the session goes on)
        plus, for a model that learnt context, that of `context` (the same for every user; None:
        missing, as metrics have it)."""
        import torch
        with torch.no_grad():
            h = self.state(history, history_time)  # (U, H)
            w = self.served
            if self.context is not None:
                codes = torch.from_numpy(self.context.codes(context))
                h = h + context_vector(w, self.context.fields, codes)  # type: ignore[operator]
            return (h @ w["E"].T + w["b"]).numpy().astype(np.float32)  # (U, n_items)

    def export(self, directory: Path) -> dict[str, str]:
        """ONNX graphs (step, session end) and numpy tables for HRNNRuntime, plus all weights for UPDATE."""
        directory.mkdir(parents=True, exist_ok=True)
        w = {k: v.detach().numpy().astype(np.float32) for k, v in self.served.items()}
        H = w["E"].shape[1]
        (directory / FILES["step"]).write_bytes(step_graph(w).SerializeToString())
        (directory / FILES["user"]).write_bytes(user_graph(w).SerializeToString())
        np.save(directory / FILES["item_embeddings"], w["E"])
        np.save(directory / FILES["item_bias"], w["b"])
        np.save(directory / FILES["initial_state"], np.tanh(w["i_b"]).astype(np.float32))
        np.savez(directory / FILES["weights"], **{k: v.detach().numpy() for k, v in self.weights.items()})
        files = dict(FILES)
        if self.metadata is not None:
            files |= self.metadata.save(directory)
        if self.context is not None:
            self.context.save(directory / CONTEXT)
            np.savez(directory / CONTEXT_TABLES, **{f"Q_{f}": w[f"Q_{f}"] for f in self.context.fields})
            files |= {"context": CONTEXT, "context_tables": CONTEXT_TABLES}
        (directory / FILES["config"]).write_text(json.dumps(
            {"hidden_dimension": H, "session_gap_seconds": self.config.session_gap_seconds,
             "max_user_history_length": self.config.max_user_history_length,
             "trained_until": self.trained_until, "params": self.params}, indent=2))
        return files


def load_for_update(directory: Path, files: Mapping[str, str] | None = None) -> HRNN:
    """The HRNN an artifact was exported from (torch weights again), to warm-start an UPDATE."""
    import torch
    files = {**FILES, **(files or {})}
    meta = json.loads((directory / files["config"]).read_text())
    with np.load(directory / files["weights"]) as z:
        weights = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    item_ids = np.asarray(read_item_ids(directory), dtype=object)  # the artifact's one vocabulary
    return HRNN(item_ids, weights, meta["params"], int(meta["trained_until"]),
                Metadata.load(directory, files),
                Context.load(directory / files.get("context", CONTEXT)))
