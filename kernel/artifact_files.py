"""A model artifact's files: the roles every recipe has, written and read here.

An artifact is a directory (kernel/artifact_store.py: where it lives, how it is published)
holding `manifest.json` (kernel.contract.ArtifactManifest: each role's file name, and each
file's checksum once published) and its files by role. Every recipe's artifact has the
`COMMON` roles, which the trainer and the synthetic artifacts of benchmarks write through
`write_common`; a recipe adds its own (HRNN: kernel/hrnn_runtime.py's FILES; SIMS: its
neighbours; Next-Best-Action: `ACTION_FILES`, written and read here). The item vocabulary
is stored once, in `item_ids`: every code in every other file indexes it.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernel.contract import ArtifactManifest
from kernel.next_best_action import ActionModel

MANIFEST = "manifest.json"
COMMON = {"item_ids": "item_ids.json", "user_ids": "user_ids.json", "user_history": "user_history.npz",
          "user_events": "user_events.npz", "popularity": "popularity.npy",
          "item_created": "item_created.npy"}


@dataclass(frozen=True)
class Common:
    """What serving needs of any model, as of training."""
    item_ids: Sequence[str]  # code -> ITEM_ID
    user_ids: Sequence[str]  # code -> USER_ID
    user_history: Mapping[str, np.ndarray]  # each user's newest interactions, CSR: offsets, items, times
    user_events: Mapping[str, np.ndarray]  # ... by event type, CSR: offsets, items, types, type_names
    popularity: np.ndarray  # float32 interactions per item
    item_created: np.ndarray  # int64 Unix seconds per item (exploration's item age)


def write_common(directory: Path, common: Common) -> dict[str, str]:
    """The common files into `directory`; their roles for the manifest."""
    (directory / COMMON["item_ids"]).write_text(json.dumps(list(common.item_ids)))
    (directory / COMMON["user_ids"]).write_text(json.dumps(list(common.user_ids)))
    np.savez(directory / COMMON["user_history"], **common.user_history)
    np.savez(directory / COMMON["user_events"], **common.user_events)
    np.save(directory / COMMON["popularity"], common.popularity.astype(np.float32))
    np.save(directory / COMMON["item_created"], common.item_created.astype(np.int64))
    return dict(COMMON)


def write_manifest(directory: Path, manifest: ArtifactManifest) -> None:
    (directory / MANIFEST).write_text(manifest.model_dump_json(indent=2))


def read_manifest(directory: Path) -> ArtifactManifest:
    return ArtifactManifest.model_validate_json((directory / MANIFEST).read_text())


# Next-Best-Action's own files: its actions' and users' ids, and its arrays (kernel.next_best_action)
ACTION_FILES = {"action_ids": "action_ids.json", "actions": "actions.npz"}
_ACTION_ARRAYS = ("rate", "eligible", "item_rows", "weighted", "weight", "taken_offsets", "taken_actions",
                  "taken_times", "value", "expiration", "repeat_s", "created")


def write_actions(directory: Path, model: ActionModel) -> dict[str, str]:
    """A Next-Best-Action model's files into `directory`; their roles for the manifest."""
    users = sorted(model.users, key=model.users.__getitem__)
    (directory / ACTION_FILES["action_ids"]).write_text(json.dumps({"actions": list(model.action_ids),
                                                                    "users": users}))
    np.savez(directory / ACTION_FILES["actions"], **{n: getattr(model, n) for n in _ACTION_ARRAYS})
    return dict(ACTION_FILES)


def read_actions(directory: Path, files: Mapping[str, str]) -> ActionModel:
    ids = json.loads((directory / files["action_ids"]).read_text())
    with np.load(directory / files["actions"], allow_pickle=False) as arrays:
        loaded = {n: arrays[n] for n in _ACTION_ARRAYS}
    return ActionModel(tuple(ids["actions"]), users={u: i for i, u in enumerate(ids["users"])}, **loaded)


def read_item_ids(directory: Path, files: Mapping[str, str] | None = None) -> list[str]:
    """The artifact's item vocabulary (`files`: the manifest's roles; the common name without)."""
    return json.loads((directory / (files or COMMON)["item_ids"]).read_text())
