"""An approximate maximum-inner-product index over an HRNN's items, for large catalogs.

HRNN scores are h . E + b, so the index holds [E | b] and is asked with [h | 1]: the inner
product is the exact score of every item it returns. faiss's IVF-Flat with the inner-product
metric: k-means splits the items into lists, a request scans the lists whose centroids score
best. Chosen over HNSW (faiss's; hnswlib 0.8.0 has no wheel) after measuring on this 2-core
machine with clustered synthetic embeddings: at 200k items IVF built in 12 s and reached
recall@25 0.96 scanning 7% of the lists in 0.9 ms, while HNSW with the inner product took 31 s
to build and reached 0.77 at efSearch 256 (the MIPS-to-L2 transform did worse: 0.81 at
efSearch 512, 50 s to build).

Known cost: k-means lists are unequal under the inner product (high-norm centroids draw more
items), and the lists a query probes are the big ones: at 1M items 24 probed lists hold ~60k
items, not 24 x 250, so a search costs ~2 ms where an even split would cost ~0.2 ms.

Building takes tens of seconds at 1M items, so the index is saved beside the artifact
(`ann-ivf<lists>.faiss`, written to a temporary name and renamed) and read back by the next
process that loads the model. faiss runs one thread per request (DESIGN.md's thread trap).
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


@dataclass
class AnnIndex:
    index: object  # faiss.IndexIVFFlat
    probes: int
    sample: np.ndarray  # int64 item codes, uniform, fixed per model
    sample_vectors: np.ndarray  # float32 [len(sample), H + 1]: [E | b] of the sample

    @property
    def lists(self) -> int:
        return int(self.index.nlist)  # type: ignore[attr-defined]

    def search(self, h: np.ndarray, m: int, probes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (about) m best items for state h (H,) among `probes` lists (default: the
        setting's): codes best first (-1 pads) and their scores."""
        import faiss
        q = np.append(h.astype(np.float32), np.float32(1.0))[None]
        params = faiss.SearchParametersIVF(nprobe=probes or self.probes)
        scores, codes = self.index.search(q, m, params=params)  # type: ignore[attr-defined]
        return codes[0], scores[0]

    def sample_scores(self, h: np.ndarray) -> np.ndarray:
        return self.sample_vectors[:, :-1] @ h + self.sample_vectors[:, -1]


def build(vectors: np.ndarray, lists: int, seed: int = 0, threads: int | None = None) -> object:
    """IVF-Flat with inner product over `vectors` ([E | b]), k-means on a seeded sample."""
    import faiss
    n, d = vectors.shape
    faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
    try:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
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
    vectors = np.ascontiguousarray(np.hstack([embeddings, bias[:, None]]).astype(np.float32))
    lists = lists or lists_for(len(vectors))
    path = directory / f"ann-ivf{lists}.faiss"
    if path.exists():
        index = faiss.read_index(str(path))
    else:
        log.info("building the ANN index of %s (%d items, %d lists)", directory, len(vectors), lists)
        index = build(vectors, lists, seed)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(index, str(tmp))
            os.replace(tmp, path)
        except OSError as exc:  # a read-only artifact volume: serve from memory, build again next time
            log.warning("could not save the ANN index to %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(vectors), min(SAMPLE, len(vectors)), replace=False))
    return AnnIndex(index=index, probes=min(probes, lists), sample=sample,
                    sample_vectors=vectors[sample])
