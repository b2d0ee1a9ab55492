"""What a request may not be recommended, kept as small as the request: no mask over the catalog.

Two parts: the codes excluded one by one (the current item of a related-items request; a user's
history where a caller leaves it out, as bench/serve.py does), and the filter's allowed set as
packed bits (one bit per item: 125 KB at 1M items), which serving.control.filters computes once per
filter and filter values and caches. The ANN search takes both as faiss ID selectors, so a
request on the index path costs O(k + excluded codes + probed lists); only the exact path unpacks
them into a bool mask over the catalog. A 1 MB mask built, filled and combined per request was
~0.3 ms of a 1M-item request and, with a filter, the reason the index was asked for 15x the
candidates (bench/serve.py). Pure numpy, no I/O.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from serving.ranking import best, best_of


@dataclass(frozen=True)
class Allowed:
    """A filter's answer: bit c of `bits` (little-endian within each byte, as faiss's
    IDSelectorBitmap reads it) is set when item c may be recommended; `count` of them are."""
    bits: np.ndarray  # uint8 [ceil(n_items / 8)]
    count: int
    n_items: int

    @classmethod
    def of(cls, mask: np.ndarray) -> Allowed:
        return cls(np.packbits(mask, bitorder="little"), int(np.count_nonzero(mask)), len(mask))

    def mask(self) -> np.ndarray:
        """bool [n_items]: O(catalog), for the exact path only."""
        return np.unpackbits(self.bits, count=self.n_items, bitorder="little").view(bool)

    def contains(self, codes: np.ndarray) -> np.ndarray:
        """bool per code (codes in [0, n_items))."""
        return ((self.bits[codes >> 3] >> (codes & 7).astype(np.uint8)) & 1).astype(bool)

    @cached_property
    def codes(self) -> np.ndarray:
        """The allowed items' codes, ascending: computed once per cached filter answer, so the
        exact path scores only these."""
        return np.flatnonzero(self.mask())


@dataclass(frozen=True)
class Exclusions:
    """Items a request may not get: `codes` (sorted, unique) and, under a filter, all but `allowed`."""
    n_items: int
    codes: np.ndarray  # int64
    allowed: Allowed | None = None  # None: no filter, every item

    @classmethod
    def of(cls, n_items: int, codes: np.ndarray | Sequence[int],
           allowed: Allowed | None = None) -> Exclusions:
        return cls(n_items, np.unique(np.asarray(codes, dtype=np.int64)), allowed)

    @property
    def n_allowed(self) -> int:
        """How many items the request may get."""
        if self.allowed is None:
            return self.n_items - len(self.codes)
        return self.allowed.count - int(np.count_nonzero(self.allowed.contains(self.codes)))

    def keep(self, codes: np.ndarray) -> np.ndarray:
        """Those of `codes` the request may get."""
        ok = ~np.isin(codes, self.codes)
        if self.allowed is not None:
            ok &= self.allowed.contains(codes)
        return codes[ok]

    def masked(self, scores: np.ndarray) -> np.ndarray:
        """A copy of `scores` with what the request may not get at -inf: beyond the copy,
        O(history) without a filter."""
        out = scores.copy() if self.allowed is None else np.where(self.allowed.mask(), scores, -np.inf)
        out[self.codes] = -np.inf
        return out

    def top(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Codes of the k best items the request may get, best first: the exact path's answer.
        Under a filter it ranks only the allowed items (O(allowed), however large the catalog);
        without one, every item but the excluded codes."""
        if self.allowed is None:
            return best(self.masked(scores), k, self.n_allowed)
        codes = self.allowed.codes
        if len(self.codes):
            codes = codes[~np.isin(codes, self.codes, assume_unique=True)]
        k = min(k, len(codes))
        return codes[best_of(scores[codes], k)] if k > 0 else np.zeros(0, dtype=np.int64)

    def mask(self) -> np.ndarray:
        """bool [n_items], True = may be recommended: what promotions and exploration rank over."""
        out = np.ones(self.n_items, dtype=bool) if self.allowed is None else self.allowed.mask()
        out[self.codes] = False
        return out
