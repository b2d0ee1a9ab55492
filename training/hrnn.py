"""aws-hrnn: a hierarchical GRU (Quadrana et al. 2017, arXiv:1706.04148) for next-item recommendation.

A session GRU reads the items of the current session. When a session ends (an inactivity gap), a user
GRU folds the session's last state into the user state, and the next session starts from
tanh(W_init . h_user + b_init). Scores are E . h + b over the whole catalog, with E tied between
the input and output item embeddings, trained with a full softmax at every position (GRU4Rec-style
session-parallel lanes, truncated BPTT).

Layout: hyperparameters -> sequences and lanes (numpy) -> the network (torch, functional) -> fit
(FULL / UPDATE) -> HRNN (the trained model, a Scorer) -> ONNX export, which stream/hrnn_runtime.py
(onnxruntime + numpy, no torch) runs for serving. torch is imported only inside the functions here.
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

from stream.hrnn_runtime import FILES, USER_STATES
from training.interactions import Interactions

if TYPE_CHECKING:
    import torch

Weights = dict[str, "torch.Tensor"]
NEW_USER, NEW_SESSION, SAME_SESSION, PAD = 2, 1, 0, -1  # what happens before an event is read
PROGRESS_EVERY_S = 10.0  # how often a training says how far into an epoch it is


# ----------------------------------------------------------------------------- hyperparameters

@dataclass(frozen=True)
class HRNNConfig:
    """Personalize's names first (strings in, parsed once), then our training knobs."""
    hidden_dimension: int = 149  # Personalize's default; also the item embedding size (tied)
    bptt: int = 32  # steps of truncated backpropagation through time
    recency_mask: bool = True  # weight recent events more in the loss (Personalize: "latest trends")
    min_user_history_length_percentile: float = 0.0  # users below it are not trained on
    max_user_history_length_percentile: float = 0.99  # ... nor above it (bots, noise)
    max_user_history_length: int = 200  # a user's last N events are trained on and scored from
    session_gap_seconds: float = 1800.0  # inactivity that ends a session
    epochs: int = 0  # 0: by data size (epochs_for)
    learning_rate: float = 0.0  # 0: 0.01, Adam's peak, cosine to 10% (0.005 undertrains, 0.02 unstable)
    dropout: float = -1.0  # -1: 0.2 on item embeddings and on the state scored (0.5 was worse)
    batch_size: int = 64  # parallel lanes: user sequences laid end to end
    negatives: int = 16384  # full softmax up to this many items, else this many sampled negatives
    update_epochs: int = 1  # UPDATE: passes over new events plus the replay sample (2 forgot more)
    replay_fraction: float = 1.0  # UPDATE: replayed older events per new event
    seed: int = 0

    @property
    def lr(self) -> float:
        return self.learning_rate or 0.01

    @property
    def update_lr(self) -> float:
        """A fine-tune's peak: 0.01 (FULL's) cost UPDATE 9% NDCG@10 on ml-100k, 0.002 cost 3.6%."""
        return self.learning_rate or 0.002

    @property
    def p_drop(self) -> float:
        return 0.2 if self.dropout < 0 else self.dropout


def parse_params(params: Mapping[str, str] | None) -> HRNNConfig:
    """Personalize passes strings; names we do not know (e.g. exploration_weight) are not ours to check."""
    out: dict[str, object] = {}
    for f in fields(HRNNConfig):
        if params and f.name in params:
            raw = str(params[f.name]).strip()
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


# ----------------------------------------------------------------------------- the network

def init_weights(n_items: int, H: int, seed: int) -> Weights:
    """Glorot-uniform matrices, zero biases; gate layout [reset | update | new] like torch.nn.GRU."""
    import torch
    g = torch.Generator().manual_seed(seed)

    def glorot(*shape: int) -> torch.Tensor:
        a = math.sqrt(6.0 / (shape[0] + shape[-1]))
        return (torch.rand(*shape, generator=g) * 2 - 1) * a

    w = {"E": glorot(n_items, H), "b": torch.zeros(n_items), "i_W": glorot(H, H), "i_b": torch.zeros(H)}
    for p in ("s", "u"):  # session GRU, user GRU
        w |= {f"{p}_Wx": glorot(H, 3 * H), f"{p}_bx": torch.zeros(3 * H),
              f"{p}_Wh": glorot(H, 3 * H), f"{p}_bh": torch.zeros(3 * H)}
    return {k: v.requires_grad_() for k, v in w.items()}


def gru(gx: torch.Tensor, h: torch.Tensor, Wh: torch.Tensor, bh: torch.Tensor) -> torch.Tensor:
    """One GRU step given the input's projection gx = x . Wx + bx (computed for a whole window at once)."""
    xr, xz, xn = gx.chunk(3, -1)  # (B, H) each
    hr, hz, hn = bh.addmm(h, Wh).chunk(3, -1)  # (B, H) each
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()  # reset applied after the matmul: torch.nn.GRU's, and ONNX's linear_before_reset
    return n + z * (h - n)  # (1 - z) n + z h


def end_session(w: Weights, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The user GRU reads the session's last state; the next session starts from it (HRNN-init)."""
    c = gru(h @ w["u_Wx"] + w["u_bx"], c, w["u_Wh"], w["u_bh"])  # (B, H) user state
    return (c @ w["i_W"] + w["i_b"]).tanh(), c  # (B, H) next session's start, (B, H)


def start_state(w: Weights, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An unknown user: user state 0, so the first session starts from tanh(b_init)."""
    c = w["i_b"].new_zeros(n, w["i_b"].shape[0])  # (n, H)
    return (c @ w["i_W"] + w["i_b"]).tanh(), c


def unroll(w: Weights, items: torch.Tensor, flags: np.ndarray, h: torch.Tensor, c: torch.Tensor,
           p_drop: float = 0.0, keep: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Run B sequences of T events from states (h, c); flags (numpy [B, T]) say what happens before each.

    Returns the state *before* each event (what predicts it; (B, T, H), if keep) and the final states.
    PAD steps leave the states as they are, so right-padded sequences end in their own last state."""
    import torch
    import torch.nn.functional as F
    x = F.dropout(w["E"][items.clamp(min=0)], p_drop, p_drop > 0)  # (B, T, H)
    gx = (x @ w["s_Wx"] + w["s_bx"]).unbind(1)  # T x (B, 3H): the input half of every step in one matmul
    kinds = (NEW_USER, NEW_SESSION, PAD)
    new_user, new_session, pad = (torch.from_numpy(flags == k)[:, :, None] for k in kinds)
    any_user, any_session, any_pad = ((flags == k).any(0) for k in kinds)
    h_new_user, _ = start_state(w, 1)  # (1, H)
    outs = []
    for t in range(items.shape[1]):
        if any_user[t]:
            h, c = torch.where(new_user[:, t], h_new_user, h), torch.where(new_user[:, t], 0.0, c)
        if any_session[t]:
            h_next, c_next = end_session(w, h, c)
            h, c = torch.where(new_session[:, t], h_next, h), torch.where(new_session[:, t], c_next, c)
        if keep:
            outs.append(h)
        h_next = gru(gx[t], h, w["s_Wh"], w["s_bh"])  # (B, H)
        h = torch.where(pad[:, t], h, h_next) if any_pad[t] else h_next
    return (torch.stack(outs, 1) if keep else None), h, c


def loss_fn(w: Weights, out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, negatives: int,
            popularity: torch.Tensor, p_drop: float, shown: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted softmax cross-entropy of the next item: over the catalog, or over `negatives` shared
    popularity-sampled items with the logQ correction when the catalog is larger than that.

    `shown` (aws-user-personalization; (N, K) codes, -1 pads): items on screen that were not chosen
    count once more in the normaliser, so the model learns what this user passed over."""
    import torch
    import torch.nn.functional as F
    o = F.dropout(out, p_drop, p_drop > 0)  # (N, H)
    E, b = w["E"], w["b"]
    if E.shape[0] <= negatives:
        logits = o @ E.T + b  # (N, I)
        pos = logits.gather(1, target[:, None])[:, 0]  # (N,)
        terms = [logits]
    else:
        q = popularity / popularity.sum()
        neg = torch.multinomial(q, negatives, replacement=True)  # (S,)
        pos = (o * E[target]).sum(-1) + b[target] - q[target].log()  # (N,)
        logits = o @ E[neg].T + b[neg] - q[neg].log()  # (N, S)
        # a sampled positive is no negative
        terms = [pos[:, None], logits.masked_fill(neg[None, :] == target[:, None], -torch.inf)]
    if shown is not None:
        s = shown.clamp(min=0)
        passed = (o[:, None, :] * E[s]).sum(-1) + b[s]  # (N, K)
        terms.append(passed.masked_fill((shown < 0) | (shown == target[:, None]), -torch.inf))
    ce = torch.logsumexp(torch.cat(terms, 1), 1) - pos
    return (ce * weight).sum() / weight.sum().clamp(min=1e-9)


# ----------------------------------------------------------------------------- training

def _threads() -> None:
    import torch
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(len(affinity) if affinity else os.cpu_count() or 1)


def train(w: Weights, cfg: HRNNConfig, item: np.ndarray, flags: np.ndarray, weight: np.ndarray,
          users: list[np.ndarray], epochs: int, peak: float, progress: Callable[[str], None] | None,
          what: str, shown: np.ndarray | None = None, checkpoint: Callable[[], None] | None = None
          ) -> list[float]:
    """Adam over `epochs` passes of lanes, state carried across BPTT windows (detached), lr on a cosine;
    the mean loss of each epoch (the training curve). `checkpoint` runs before every step: it raises to
    stop the training (a shutdown, a stop). An epoch can take minutes on a busy machine, so `progress`
    also hears how far into one it is, every PROGRESS_EVERY_S."""
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
        h, c = start_state(w, len(rows))
        total, count = 0.0, 0
        for s in range(0, rows.shape[1], cfg.bptt):
            if checkpoint:
                checkpoint()
            win = slice(s, s + cfg.bptt)
            out, h, c = unroll(w, it[:, win], f[:, win], h.detach(), c.detach(), cfg.p_drop)
            valid = it[:, win] >= 0  # (B, T)
            loss = loss_fn(w, out[valid], it[:, win][valid], wt[:, win][valid], cfg.negatives, popularity,
                           cfg.p_drop, None if sh is None else sh[:, win][valid])
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
        since: int | None = None, checkpoint: Callable[[], None] | None = None) -> HRNN:
    """FULL (parent None): train from scratch. UPDATE: the parent's weights and vocabulary, new items
    appended (mean embedding + noise, mean bias), fine-tuned on the events after `since` (default: the
    parent's last training event) plus as many replayed older events, each with its user's recent context."""
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
    flags = session_flags(data.user, data.time, cfg.session_gap_seconds)
    weight = recency_weights(data.time, cfg.recency_mask)
    off = data.offsets
    if parent is None:
        w = init_weights(len(vocab), cfg.hidden_dimension, cfg.seed)
        since = None
        per_user = [np.flatnonzero(rows[off[u]:off[u + 1]]) + off[u] for u in range(data.n_users)]
        segments = [p for r in per_user for p in pieces(r, cfg.max_user_history_length)]
        epochs, peak, what = epochs_for(cfg, int(rows.sum())), cfg.lr, "FULL"
    else:
        w = _grow(parent.weights, len(vocab), cfg.seed)
        since = parent.trained_until if since is None else since
        segments = update_segments(data, rows, since, cfg, np.random.default_rng(cfg.seed))
        epochs, peak, what = cfg.update_epochs, cfg.update_lr, "UPDATE"
    segments = [s for s in segments if len(s)]
    if progress:
        users = len(np.unique(data.user[[s[0] for s in segments]])) if segments else 0
        cut = f" ({len(segments):,} history segments)" if len(segments) != users else ""
        progress(f"{what}: {sum(map(len, segments)):,} events of {users:,} users{cut}, "
                 f"{len(vocab):,} items ({len(new_ids):,} new), {epochs} epochs"
                 + ("" if shown is None else f", {int((shown >= 0).any(1).sum()):,} with impressions"))
    curve = []
    if segments:
        curve = train(w, cfg, item, flags, weight, segments, epochs, peak, progress, what, shown, checkpoint)
    elif progress:  # an UPDATE with nothing archived since its parent: same weights, same answers
        progress(f"{what}: no new events since the parent; weights kept")
    until = int(data.time.max()) if len(data) else (parent.trained_until if parent else 0)
    model = HRNN(vocab, {k: v.detach() for k, v in w.items()}, {**(parent.params if parent else {}),
                 **{k: str(v) for k, v in (params or {}).items()}}, until)
    model.loss_curve = curve
    model.used = used_params(cfg, epochs if segments else 0, peak)
    return model


def used_params(cfg: HRNNConfig, epochs: int, peak: float) -> dict[str, str]:
    """The hyperparameters a training ran with, defaults resolved (what "0: by data size" became)."""
    out = {f.name: str(getattr(cfg, f.name)).lower() if f.type == "bool" else str(getattr(cfg, f.name))
           for f in fields(HRNNConfig)}
    return out | {"epochs": str(epochs), "learning_rate": str(peak), "dropout": str(cfg.p_drop)}


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


def _grow(parent: Weights, n_items: int, seed: int) -> Weights:
    """Parent weights plus rows for new items: mean embedding + noise (spread like the old), mean bias."""
    import torch
    w = {k: v.detach().clone() for k, v in parent.items()}
    n_new = n_items - w["E"].shape[0]
    if n_new > 0:
        g = torch.Generator().manual_seed(seed)
        E, b = w["E"], w["b"]
        noise = torch.randn(n_new, E.shape[1], generator=g) * E.std(0)
        w["E"] = torch.cat([E, E.mean(0) + noise])
        w["b"] = torch.cat([b, b.mean().expand(n_new)])
    return {k: v.requires_grad_() for k, v in w.items()}


# ----------------------------------------------------------------------------- the trained model

class HRNN:
    """A trained HRNN: the vocabulary, torch weights and the hyperparameters it was trained with."""

    def __init__(self, item_ids: np.ndarray, weights: Weights, params: dict[str, str], trained_until: int):
        self.item_ids = item_ids  # code -> ITEM_ID, the model's vocabulary
        self.weights = weights
        self.params = params
        self.config = parse_params(params)
        self.trained_until = trained_until  # the last event time it learned from (UPDATE's default `since`)
        self.loss_curve: list[float] = []  # mean loss per epoch of the training that made it
        self.used: dict[str, str] = {}  # the hyperparameters that training resolved and ran with

    def state(self, history: list[np.ndarray], history_time: list[np.ndarray]) -> torch.Tensor:
        """Session state after each user's last N events, sessions split by the gap: (U, H)."""
        return self.states(history, history_time)[0]

    def states(self, history: list[np.ndarray],
               history_time: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """(session state, user state) after each user's last N events: (U, H) each."""
        import torch
        w, cfg, n = self.weights, self.config, self.config.max_user_history_length
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
              history_time: list[np.ndarray]) -> np.ndarray:
        """E . h + b for every item, h the state after the history (assumes the session goes on)."""
        import torch
        with torch.no_grad():
            h = self.state(history, history_time)  # (U, H)
            return (h @ self.weights["E"].T + self.weights["b"]).numpy().astype(np.float32)  # (U, n_items)

    def export(self, directory: Path) -> dict[str, str]:
        """ONNX graphs (step, session end) and numpy tables for HRNNRuntime, plus all weights for UPDATE."""
        directory.mkdir(parents=True, exist_ok=True)
        w = {k: v.detach().numpy().astype(np.float32) for k, v in self.weights.items()}
        H = w["E"].shape[1]
        (directory / FILES["step"]).write_bytes(_step_graph(w).SerializeToString())
        (directory / FILES["user"]).write_bytes(_user_graph(w).SerializeToString())
        np.save(directory / FILES["item_embeddings"], w["E"])
        np.save(directory / FILES["item_bias"], w["b"])
        np.save(directory / FILES["initial_state"], np.tanh(w["i_b"]).astype(np.float32))
        np.save(directory / FILES["item_index"], self.item_ids.astype(str))
        np.savez(directory / FILES["weights"], **w)
        (directory / FILES["config"]).write_text(json.dumps(
            {"hidden_dimension": H, "session_gap_seconds": self.config.session_gap_seconds,
             "max_user_history_length": self.config.max_user_history_length,
             "trained_until": self.trained_until, "params": self.params}, indent=2))
        return dict(FILES)


def load_for_update(directory: Path, files: Mapping[str, str] | None = None) -> HRNN:
    """The HRNN an artifact was exported from (torch weights again), to warm-start an UPDATE."""
    import torch
    files = {**FILES, **(files or {})}
    meta = json.loads((directory / files["config"]).read_text())
    with np.load(directory / files["weights"]) as z:
        weights = {k: torch.from_numpy(z[k].copy()) for k in z.files}
    item_ids = np.load(directory / files["item_index"]).astype(object)
    return HRNN(item_ids, weights, meta["params"], int(meta["trained_until"]))


# ----------------------------------------------------------------------------- ONNX (built by hand)
# Built with onnx.helper rather than traced: the graphs are a dozen nodes, their inputs are exactly the
# ones named (the TorchScript exporter drops an unused h_user), and no torch is needed at export.

def _onnx_gru(nodes: list, p: str, gx: str, h: str, out: str) -> None:
    from onnx import helper
    nodes += [helper.make_node("MatMul", [h, f"{p}_Wh"], [f"{p}_hWh"]),
              helper.make_node("Add", [f"{p}_hWh", f"{p}_bh"], [f"{p}_gh"]),
              helper.make_node("Split", [gx], [f"{p}_xr", f"{p}_xz", f"{p}_xn"], axis=1, num_outputs=3),
              helper.make_node("Split", [f"{p}_gh"], [f"{p}_hr", f"{p}_hz", f"{p}_hn"], axis=1,
                               num_outputs=3),
              helper.make_node("Add", [f"{p}_xr", f"{p}_hr"], [f"{p}_r0"]),
              helper.make_node("Sigmoid", [f"{p}_r0"], [f"{p}_r"]),
              helper.make_node("Add", [f"{p}_xz", f"{p}_hz"], [f"{p}_z0"]),
              helper.make_node("Sigmoid", [f"{p}_z0"], [f"{p}_z"]),
              helper.make_node("Mul", [f"{p}_r", f"{p}_hn"], [f"{p}_rhn"]),
              helper.make_node("Add", [f"{p}_xn", f"{p}_rhn"], [f"{p}_n0"]),
              helper.make_node("Tanh", [f"{p}_n0"], [f"{p}_n"]),
              helper.make_node("Sub", [h, f"{p}_n"], [f"{p}_d"]),
              helper.make_node("Mul", [f"{p}_z", f"{p}_d"], [f"{p}_zd"]),
              helper.make_node("Add", [f"{p}_n", f"{p}_zd"], [out])]


def _graph(name: str, nodes: list, inputs: list, outputs: list[str], w: dict[str, np.ndarray], H: int):
    from onnx import TensorProto, helper, numpy_helper
    vi = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    vo = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", H]) for n in outputs]
    inits = [numpy_helper.from_array(v, k) for k, v in w.items()]
    model = helper.make_model(helper.make_graph(nodes, name, vi, vo, inits),
                              opset_imports=[helper.make_opsetid("", 18)], producer_name="openpersonalize")
    model.ir_version = 9
    return model


def _step_graph(w: dict[str, np.ndarray]):
    """(item_ids int64[B], h_session [B, H], h_user [B, H]) -> h_session_next [B, H].

    h_user is part of the contract but HRNN-init reads it only at session ends (the user graph)."""
    from onnx import TensorProto, helper
    H = w["E"].shape[1]
    nodes = [helper.make_node("Gather", ["E", "item_ids"], ["x"], axis=0),
             helper.make_node("MatMul", ["x", "s_Wx"], ["xWx"]),
             helper.make_node("Add", ["xWx", "s_bx"], ["gx"])]
    _onnx_gru(nodes, "s", "gx", "h_session", "h_session_next")
    inputs = [("item_ids", TensorProto.INT64, ["batch"]), ("h_session", TensorProto.FLOAT, ["batch", H]),
              ("h_user", TensorProto.FLOAT, ["batch", H])]
    return _graph("hrnn_step", nodes, inputs, ["h_session_next"],
                  {k: w[k] for k in ("E", "s_Wx", "s_bx", "s_Wh", "s_bh")}, H)


def _user_graph(w: dict[str, np.ndarray]):
    """(h_session [B, H], h_user [B, H]) -> (h_session_start [B, H], h_user_next [B, H]) at a session end."""
    from onnx import TensorProto, helper
    H = w["E"].shape[1]
    nodes = [helper.make_node("MatMul", ["h_session", "u_Wx"], ["hWx"]),
             helper.make_node("Add", ["hWx", "u_bx"], ["gx"])]
    _onnx_gru(nodes, "u", "gx", "h_user", "h_user_next")
    nodes += [helper.make_node("MatMul", ["h_user_next", "i_W"], ["cW"]),
              helper.make_node("Add", ["cW", "i_b"], ["s0"]),
              helper.make_node("Tanh", ["s0"], ["h_session_start"])]
    inputs = [("h_session", TensorProto.FLOAT, ["batch", H]), ("h_user", TensorProto.FLOAT, ["batch", H])]
    return _graph("hrnn_user", nodes, inputs, ["h_session_start", "h_user_next"],
                  {k: w[k] for k in ("u_Wx", "u_bx", "u_Wh", "u_bh", "i_W", "i_b")}, H)
