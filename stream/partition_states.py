"""The session states a stream worker stored last, per partition it applies, kept in memory: the
next batch of that partition reads from the store only the users it has not kept.

A partition's users are written only by the worker that applies it, each save together with
the partition's position (stream/applier.py). So while the store still holds the position this
worker saved last, and no erasure has run on the dataset group since (SessionStore.erase counts
them), the states it saved are the store's own. Anything else (a rebalance that let another
worker write, a store that lost its data, a replay, an erasure) changes that stamp, and what was
kept for the partition is dropped. Pure logic: the applier reads and writes the store.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from stream.session import SessionState

Key = tuple[str, str]  # (dataset group, user key)
Stamp = tuple[int | None, int | None]  # (the partition's stored position, the group's erasures)
MAX_USERS = 200_000  # states kept per worker, least recently used dropped first


class PartitionStates:
    def __init__(self, max_users: int = MAX_USERS) -> None:
        self.max_users = max_users
        self._stamps: dict[str, Stamp] = {}
        self._generations: dict[str, int] = {}  # a partition's states of an older one are dropped
        self._states: OrderedDict[Key, tuple[str, int, SessionState | None]] = OrderedDict()

    def kept(self, position: str, keys: Sequence[Key]) -> dict[Key, SessionState | None]:
        """What was kept for `keys` of the partition: the store's, if `still` says so."""
        generation = self._generations.get(position, 0)
        out = {}
        for key in keys:
            hit = self._states.get(key)
            if hit is not None and hit[0] == position and hit[1] == generation:
                out[key] = hit[2]
                self._states.move_to_end(key)
        return out

    def still(self, position: str, stamp: Stamp) -> bool:
        """Whether the store's stamp is the one this worker saved; if not, the partition's
        kept states are dropped."""
        if position in self._stamps and self._stamps[position] == stamp:
            return True
        self.drop(position)
        return False

    def drop(self, position: str) -> None:
        self._stamps.pop(position, None)
        self._generations[position] = self._generations.get(position, 0) + 1

    def keep(self, position: str, stamp: Stamp, states: Mapping[Key, SessionState | None]) -> None:
        """The states the store holds for the partition's users now, saved with `stamp`."""
        generation = self._generations.get(position, 0)
        self._stamps[position] = stamp
        for key, state in states.items():
            self._states[key] = (position, generation, state)
            self._states.move_to_end(key)
        while len(self._states) > self.max_users:
            self._states.popitem(last=False)
