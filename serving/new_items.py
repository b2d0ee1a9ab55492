"""Items added after training, recommended from the first minute by the models that can.

A v2 recipe's model carries its item tower (kernel.hrnn_runtime: the feature encoder, F_W, F_b):
an item's embedding and bias follow from its metadata. So when the ITEMS dataset gains items (a
PutItems, an import) after training, serving appends them to the model's vocabulary with their
metadata's embedding, and every request path (scores, filters, exclusions, ranking, metadata
columns) sees a larger catalogue; nothing is retrained. The model grown for one version of the
ITEMS dataset is kept until the dataset changes again; the model as trained stays in
serving.models' cache, so the next change grows it afresh.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from kernel.datasets import DatasetStore
from serving.models import Model, freeze_loaded


def grown(model: Model, items: pa.Table, now: float) -> Model:
    """`model` (as trained) scoring every item of `items` it lacks, too; itself where none is new
    or it cannot. A new item's creation time is its CREATION_TIMESTAMP, else `now`."""
    if not model.grows or not items.num_rows or "ITEM_ID" not in items.column_names:
        return model
    assert model.runtime is not None
    ids = items["ITEM_ID"].combine_chunks().cast(pa.string()).to_pylist()
    new = list(dict.fromkeys(i for i in ids if i is not None and i not in model.index))
    if not new:
        return model
    created = None
    if model.created is not None:
        created = np.full(len(new), int(now), dtype=np.int64)
        if "CREATION_TIMESTAMP" in items.column_names:
            at = dict(zip(ids, items["CREATION_TIMESTAMP"].to_pylist(), strict=True))
            created = np.asarray([int(at[i]) if at.get(i) is not None else int(now) for i in new], np.int64)
        created = np.concatenate([model.created, created])
    return dataclasses.replace(
        model, known=model.known.with_items(new), runtime=model.runtime.with_items(items, new),
        popularity=np.concatenate([model.popularity, np.zeros(len(new), np.float32)]),
        created=created, n_trained=model.n_items)


class NewItems:
    """Each growing model as of its dataset group's ITEMS dataset now (`version`: what that
    dataset is made of, as serving.control.filters reads it, fresh within a second)."""

    def __init__(self, datasets: DatasetStore, version: Callable[[str], tuple[str, ...]]) -> None:
        self.datasets, self.version = datasets, version
        self._grown: dict[str, tuple[tuple[str, ...], Model]] = {}
        self._lock = threading.Lock()

    def ready(self, model: Model, group: str) -> bool:
        """Whether of() answers from its cache; else it reads the items dataset (O(catalogue)),
        which callers on an event loop run in a thread."""
        hit = self._grown.get(model.arn)
        return not model.grows or (hit is not None and hit[0] == self.version(group))

    def of(self, model: Model, group: str) -> Model:
        if not model.grows:
            return model
        version = self.version(group)
        hit = self._grown.get(model.arn)
        if hit is None or hit[0] != version:
            with self._lock:  # one read: requests that waited on it find it done
                hit = self._grown.get(model.arn)
                if hit is None or hit[0] != version:
                    hit = self._grown[model.arn] = (
                        version, grown(model, self.datasets.read(group, "ITEMS"), time.time()))
                    freeze_loaded()
        return hit[1]
