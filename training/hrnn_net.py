"""The HRNN network and its loss (Quadrana et al. 2017, arXiv:1706.04148), functional torch.

A session GRU reads the items of the current session. When a session ends (an inactivity gap), a
user GRU folds the session's last state into the user state, and the next session starts from
tanh(W_init . h_user + b_init). Scores are E . h + b over the whole catalog, E tied between the
input and output item embeddings. B: lanes (sequences side by side), T: steps, H: the hidden
dimension, I: items. training/hrnn.py trains it; training/hrnn_onnx.py exports it for serving.
torch is imported inside the functions: importing this module costs nothing.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

Weights = dict[str, "torch.Tensor"]
NEW_USER, NEW_SESSION, SAME_SESSION, PAD = 2, 1, 0, -1  # what happens before an event is read


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


def add_metadata(w: Weights, d: int, seed: int) -> Weights:
    """The v2 recipes' item tower: F_W [d, H] and F_b [d] map an item's metadata vector to the
    part of its embedding and bias that metadata explains (`effective`)."""
    import torch
    g = torch.Generator().manual_seed(seed + 1)
    H = w["E"].shape[1]
    a = math.sqrt(6.0 / (d + H))
    return w | {"F_W": ((torch.rand(d, H, generator=g) * 2 - 1) * a).requires_grad_(),
                "F_b": torch.zeros(d).requires_grad_()}


def effective(w: Weights, features: torch.Tensor | None, warm: torch.Tensor | None,
              p_cold: float = 0.0) -> Weights:
    """The weights with each item's embedding and bias as the network uses them: its own (learnt
    from its interactions) plus what its metadata says (`features` [I, d] @ F_W). An item no one
    interacted with in training (`warm` 0) has only the metadata part, so it is scored from the
    first minute; training drops the own part of a random `p_cold` of the warm items at each step,
    so the metadata part learns to stand alone. Without features: the weights as they are."""
    if features is None or "F_W" not in w:
        return w
    import torch
    keep = warm if warm is not None else torch.ones(features.shape[0])
    if p_cold > 0:
        keep = keep * (torch.rand(keep.shape[0]) >= p_cold)
    return w | {"E": keep[:, None] * w["E"] + features @ w["F_W"], "b": keep * w["b"] + features @ w["F_b"]}


def context_vector(w: Weights, fields: tuple[str, ...], codes: torch.Tensor) -> torch.Tensor | None:
    """The v2 recipes' query-side context: sum over the context fields f of Q_f[code] (codes
    [..., F], 0: missing), added to the state that scores the next item, so the same user is
    scored differently on a phone and on a desktop. None without context tables."""
    out = None
    for j, name in enumerate(fields):
        q = w[f"Q_{name}"][codes[..., j]]
        out = q if out is None else out + q
    return out


def with_context(w: Weights, fields: tuple[str, ...], sizes: tuple[int, ...]) -> Weights:
    """The weights with a table Q_f [values + 1, H] per context field f (row 0: a missing or unknown
    value), the rows they had kept and new ones zero; tables of fields no longer there dropped."""
    import torch
    H = w["E"].shape[1]
    out = {k: v for k, v in w.items() if not k.startswith("Q_")}
    for name, n in zip(fields, sizes, strict=True):
        old = w.get(f"Q_{name}")
        q = torch.zeros(n + 1, H)
        if old is not None:
            keep = min(len(old), n + 1)
            q[:keep] = old.detach()[:keep]
        out[f"Q_{name}"] = q.requires_grad_()
    return out


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


def grow(parent: Weights, n_items: int, seed: int) -> Weights:
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
