"""An approximate maximum-inner-product index over an HRNN's items, for large catalogs.

HRNN scores are h . E + b: the best items are those of largest inner product between [E | b]
and [h | 1]. The index turns that into a nearest-neighbour search (Bachrach et al. 2014's
MIPS-to-L2 transform): it holds x = [E | b | sqrt(M - |[E | b]|^2)], M the largest squared
norm, and is asked with q = [h | 1 | 0]; then |x - q|^2 = M + |q|^2 - 2 score, so the nearest
items are the best-scoring ones. faiss's IVF-Flat (L2): k-means splits the items into lists, a
request scans the lists whose centroids are nearest. Chosen over HNSW (faiss's; hnswlib 0.8.0
has no wheel): at 200k items HNSW took 31 s to build and reached recall@25 0.77 (inner product)
or 0.81 (this transform) at efSearch 256-512.

Why the transform rather than IVF with the inner-product metric (what this index was first):
inner-product k-means gives unequal lists (high-norm centroids draw more items, and every query
probes those), so at 1M items 24 probed lists held ~64k items, not 24 x 250: 1.7 ms p50 per
search for recall@25 0.99. L2 k-means on the transformed vectors splits evenly enough (largest
list 1.8k items, not 5.9k) and probes the right lists: 0.5 ms p50 for recall@25 1.000 at 24
probes, 0.23 ms at 8 (1M clustered synthetic items, 200 users' states, this 2-core machine).

The request's exclusions and filter go in as faiss ID selectors (`search`), checked before an
item is scored. Building takes about a minute at 1M items, so the index is saved beside the
artifact (`ann-ivfl2-<lists>.faiss`, written to a temporary name and renamed) and read back by
the next process that loads the model. faiss runs one thread per request (docs/architecture.md,
"Threads").
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
TRAIN_PER_LIST = 40  # k-means sample: faiss wants >= 39 points per centroid
KMEANS_ITERATIONS = 10
SAMPLE = 4096  # items scored exactly per request to estimate the softmax's normaliser


def lists_for(n_items: int) -> int:
    """The usual 4 x sqrt(n) inverted lists: a list holds ~sqrt(n) / 4 items."""
    return max(1, int(4 * math.sqrt(n_items)))


def transformed(vectors: np.ndarray) -> np.ndarray:
    """float32 [n, d + 1]: [v | sqrt(M - |v|^2)], so every row has squared norm M."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(norms.max(initial=0.0) - norms, 0.0))
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]).astype(np.float32))


@dataclass
class AnnIndex:
    index: object  # faiss.IndexIVFFlat (L2) over transformed([E | b])
    probes: int
    sample: np.ndarray  # int64 item codes, uniform, fixed per model, sorted
    sample_embeddings: np.ndarray  # float32 [len(sample), H], contiguous: E of the sample
    sample_bias: np.ndarray  # float32 [len(sample)]

    @property
    def lists(self) -> int:
        return int(self.index.nlist)  # type: ignore[attr-defined]

    def search(self, h: np.ndarray, m: int, probes: int | None = None, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None) -> np.ndarray:
        """The m best items for state h (H,) among `probes` lists (default: the setting's):
        their codes, best first (-1 pads where the lists ran short). `exclude` (int64 codes) and
        `allowed` (packed bits, serving.exclusions.Allowed) are checked by faiss as it scans the
        lists, before it scores an item: a filter letting 10% through scores 10% of them."""
        import faiss
        q = np.concatenate([h.astype(np.float32), np.array([1.0, 0.0], dtype=np.float32)])[None]
        params = faiss.SearchParametersIVF(nprobe=probes or self.probes)
        selector = None if allowed is None else faiss.IDSelectorBitmap(allowed)
        if exclude is not None and len(exclude):
            unseen = faiss.IDSelectorNot(faiss.IDSelectorBatch(exclude))
            selector = unseen if selector is None else faiss.IDSelectorAnd(selector, unseen)
        if selector is not None:
            params.sel = selector
        _, codes = self.index.search(q, m, params=params)  # type: ignore[attr-defined]
        return codes[0]

    def sample_scores(self, h: np.ndarray) -> np.ndarray:
        return self.sample_embeddings @ h + self.sample_bias

    def in_sample(self, codes: np.ndarray) -> np.ndarray:
        """bool per sample item: whether it is one of `codes` (np.isin, but O(codes x log sample)
        rather than sorting both: 75 us -> a few at 4,096 samples)."""
        at = np.searchsorted(self.sample, codes)
        hit = at < len(self.sample)
        hit[hit] = self.sample[at[hit]] == codes[hit]
        out = np.zeros(len(self.sample), dtype=bool)
        out[at[hit]] = True
        return out


def build(vectors: np.ndarray, lists: int, seed: int = 0, threads: int | None = None) -> object:
    """IVF-Flat (L2) over `vectors` (transformed([E | b])), k-means on a seeded sample."""
    import faiss
    n, d = vectors.shape
    faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
    try:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, lists, faiss.METRIC_L2)
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        train = vectors if n <= TRAIN_PER_LIST * lists else \
            vectors[np.sort(rng.choice(n, TRAIN_PER_LIST * lists, replace=False))]
        index.train(np.ascontiguousarray(train))
        index.add(vectors)
    finally:
        faiss.omp_set_num_threads(1)
    return index


def load_or_build(directory: Path, embeddings: np.ndarray, bias: np.ndarray, *, lists: int = 0,
                  probes: int = 24, seed: int = 0) -> AnnIndex:
    """The model's index: read from beside the artifact, else built and saved there."""
    import faiss
    n_items = len(embeddings)
    lists = lists or lists_for(n_items)
    path = directory / f"ann-ivfl2-{lists}.faiss"
    if path.exists():
        index = faiss.read_index(str(path))
    else:  # [E | b] only to build: at 1M items a 0.5 GB copy no load of a built index needs
        log.info("building the ANN index of %s (%d items, %d lists)", directory, n_items, lists)
        index = build(transformed(np.hstack([embeddings, bias[:, None]]).astype(np.float32)), lists, seed)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(index, str(tmp))
            os.replace(tmp, path)
        except OSError as exc:  # a read-only artifact volume: serve from memory, build again next time
            log.warning("could not save the ANN index to %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n_items, min(SAMPLE, n_items), replace=False))
    return AnnIndex(index=index, probes=min(probes, lists), sample=sample,
                    sample_embeddings=np.ascontiguousarray(embeddings[sample], dtype=np.float32),
                    sample_bias=bias[sample].astype(np.float32))
