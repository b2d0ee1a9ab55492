"""A synthetic HRNN artifact of any catalog size: random weights, the trainer's file layout.

For serving benchmarks and tests that need 10k..1M items, which no bundled dataset has. The
GRU weights are the untrained initialisation (training.hrnn_net.init_weights); the item
embeddings are clustered (items scattered around n_items / 100 random centres) rather than
i.i.d., because trained embedding tables are clustered and an i.i.d. table is a worst case
that no approximate index can exploit (`clustered=False` builds that one). Users get
histories of 5..200 events (median ~60, like MovieLens-100k's) with a session break every
25 events, so serving's state computation and exclusions cost what they would in use.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from kernel.artifact_files import Common, write_common, write_manifest
from kernel.contract import EVENTS_PER_TYPE, ArtifactManifest
from training.interactions import newest_per_group

T0 = 1_700_000_000


def embeddings(n_items: int, hidden: int, rng: np.random.Generator, clustered: bool = True) -> np.ndarray:
    """float32 [n_items, hidden], rows of norm ~1."""
    if not clustered:
        return (rng.standard_normal((n_items, hidden), dtype=np.float32) / np.sqrt(hidden)).astype(np.float32)
    centres = rng.standard_normal((max(n_items // 100, 1), hidden), dtype=np.float32) / np.sqrt(hidden)
    out = centres[rng.integers(0, len(centres), n_items)]
    out += 0.5 * rng.standard_normal((n_items, hidden), dtype=np.float32) / np.sqrt(hidden)
    return out.astype(np.float32)


def histories(n_users: int, n_items: int, rng: np.random.Generator, median: float = 60,
              longest: int = 200) -> dict[str, np.ndarray]:
    """CSR (offsets, items, times) of each user's events, the artifact's user_history.npz:
    lengths log-normal around `median`, from 5 (or `longest`, if fewer) to `longest`."""
    lengths = np.clip(rng.lognormal(np.log(median), 0.9, n_users), min(5, longest), longest).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = rng.integers(0, n_items, offsets[-1]).astype(np.int32)
    step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)  # event number within its user
    times = T0 + 60 * step + 7200 * (step // 25)  # a 2-hour break (a new session) every 25 events
    return {"offsets": offsets, "items": items, "times": times.astype(np.int64)}


def clicks_by_type(history: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The artifact's user_events.npz for these histories: every event a click, the newest
    EVENTS_PER_TYPE of each user's kept."""
    lengths = np.diff(history["offsets"])
    user = np.repeat(np.arange(len(lengths)), lengths)
    rows = newest_per_group(user, history["times"], EVENTS_PER_TYPE)
    return {"offsets": np.searchsorted(user[rows], np.arange(len(lengths) + 1)).astype(np.int64),
            "items": history["items"][rows], "types": np.zeros(len(rows), dtype=np.int32),
            "type_names": np.asarray(["click"])}


def write_artifact(directory: Path, n_items: int, *, n_users: int = 10_000, hidden: int = 128,
                   clustered: bool = True, seed: int = 0, history_median: float = 60,
                   history_longest: int = 200) -> Path:
    """The whole artifact directory (manifest.json and all), written to a temporary name and
    renamed like the trainer's; returns `directory`. Each user's state as of training is
    computed from its history, so a million users want short histories (`history_longest`)."""
    import torch

    from training import hrnn, hrnn_net

    rng = np.random.default_rng(seed)
    item_ids = np.array([f"i{c}" for c in range(n_items)], dtype=object)
    weights = hrnn_net.init_weights(n_items, hidden, seed)
    with torch.no_grad():
        weights["E"] = torch.from_numpy(embeddings(n_items, hidden, rng, clustered))
        weights["b"] = torch.from_numpy((0.5 * rng.standard_normal(n_items)).astype(np.float32))
    history = histories(n_users, n_items, rng, history_median, history_longest)
    model = hrnn.HRNN(item_ids, weights, {"hidden_dimension": str(hidden)}, int(history["times"].max()))
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    common = Common(item_ids=item_ids.tolist(), user_ids=[f"u{u}" for u in range(n_users)],
                    user_history=history, user_events=clicks_by_type(history),
                    popularity=np.bincount(history["items"], minlength=n_items).astype(np.float32),
                    item_created=np.full(n_items, T0, dtype=np.int64))
    files = {**write_common(tmp, common), **model.export(tmp), **model.export_user_states(tmp, history)}
    write_manifest(tmp, ArtifactManifest(solution_version_arn="", recipe="aws-hrnn", created_at=time.time(),
                                         hidden_dimension=hidden, data_cut=int(history["times"].max()),
                                         files=files))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    return directory
