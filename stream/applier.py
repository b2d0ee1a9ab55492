"""Apply events to the session store: read the users' states once, apply, write once.

`apply_batch` serves the embedded in-process consumer (`run_consumer`), whose SQLite log
tracks its own position; `apply_partition` serves the Faust session agent, which
keeps each Kafka partition's position in the store itself. Both use `session.apply`.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from kernel.contract import Event, Undecodable, anonymous_key
from stream.counters import Increments, increments
from stream.dead_letters import Postbox, handle_or_set_aside
from stream.log import EventLog
from stream.partition_states import PartitionStates, Stamp
from stream.session import Limits, Recurrent, SessionState, apply
from stream.store import Key, PositionMoved, SessionStore, erasures_name
from stream.supervision import TRANSIENT, retrying

log = logging.getLogger(__name__)
SESSION_GROUP = "opz-sessions"
# (replay from this offset, None = the partition's start; up to this offset, exclusive)
Replay = Callable[[int | None, int], Awaitable[None]]
# told which events changed a state, once they are stored (stream/metrics.py: freshness)
OnApplied = Callable[[Sequence[Event]], None]
# told which events no state could take (session.apply raised on them): dead letters
Refused = list[tuple[Event, Exception]]
OnRefused = Callable[[Refused], None]
# dataset group -> the model whose recurrent state follows its users (stream/live_state.py)
Live = Callable[[str], Recurrent | None]
# states kept in memory for some users, and whether the positions read say they are the store's
Kept = tuple[Mapping[Key, SessionState | None], Callable[[list[int | None]], bool] | None]


async def _states(store: SessionStore, events: Sequence[Event], positions: Sequence[str] = (),
                  kept: Kept | None = None) -> tuple[dict[Key, SessionState | None], list[int | None]]:
    """The users' states and the named positions in one round trip; then, only for identified
    users moving to another session (a sign-in, or a new visit), what that session holds while
    anonymous (a second, rarer trip: `session.stitched`). `kept`: states of some of the users
    kept in memory, and whether the positions read say they are still the store's (if not,
    they are read too)."""
    keys = list(dict.fromkeys((e.dataset_group, e.user_key) for e in events))
    known, still = kept if kept is not None else ({}, None)
    wanted = [k for k in keys if k not in known]
    loaded, stored = await store.load(wanted, positions)
    states = dict(zip(wanted, loaded, strict=True))
    if known and still is not None and still(stored):
        states.update(known)
    elif known:
        states.update(zip(known, (await store.load(list(known)))[0], strict=True))
    anonymous = [k for k in dict.fromkeys(
        (e.dataset_group, anonymous_key(e.session_id)) for e in events if e.user_id is not None
        and getattr(states[(e.dataset_group, e.user_key)], "session_id", None) != e.session_id)
        if k not in states]
    if anonymous:
        states.update(zip(anonymous, (await store.load(anonymous))[0], strict=True))
    return states, stored


def _advance(states: dict[Key, SessionState | None], events: Iterable[Event], limits: Limits,
             live: Live | None) -> tuple[dict[Key, SessionState], Increments, list[Event], Refused]:
    """Apply events in order to `states` (updated in place).

    Returns the changed states, the counter increments of the events that were new (a
    duplicate changes no state and counts nothing), those events, and the events that
    `apply` raised on (they change nothing; the others go on).
    """
    changed: dict[Key, SessionState] = {}
    fresh: list[Event] = []
    refused: Refused = []
    for event in events:
        key = (event.dataset_group, event.user_key)
        anonymous = states.get((event.dataset_group, anonymous_key(event.session_id))) \
            if event.user_id is not None else None
        try:
            new = apply(states[key], event, live(event.dataset_group) if live else None, limits, anonymous)
        except Exception as exc:  # noqa: BLE001 - a bug one event triggers must not stop the rest
            refused.append((event, exc))
            continue
        if new is not states[key]:
            states[key] = changed[key] = new
            fresh.append(event)
    return changed, increments(fresh), fresh, refused


def _refused(refused: Refused, on_refused: OnRefused | None) -> None:
    """Once the others are stored; without a taker (tests, tools), at least logged."""
    if refused and on_refused is not None:
        on_refused(refused)
        return
    for event, exc in refused:
        log.error("session state: event %s of %s refused: %r", event.event_id, event.dataset_group, exc)


async def apply_batch(events: Sequence[Event], store: SessionStore, limits: Limits,
                      live: Live | None = None, on_applied: OnApplied | None = None,
                      on_refused: OnRefused | None = None) -> int:
    """Apply `events` in order; returns how many changed a state (duplicates do not).

    `on_applied` gets those events once they are stored.
    """
    states, _ = await _states(store, events)
    changed, counts, applied, refused = _advance(states, events, limits, live)
    if changed:
        await store.save(changed, counts=counts)
    if on_applied is not None:
        on_applied(applied)
    _refused(refused, on_refused)
    return len(applied)


def position_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


async def apply_partition(records: Sequence[tuple[int, Event]], *, position: str,
                          store: SessionStore, limits: Limits, replay: Replay | None,
                          live: Live | None = None, on_applied: OnApplied | None = None,
                          on_refused: OnRefused | None = None, kept: PartitionStates | None = None) -> int:
    """Apply one partition's (offset, event) records exactly once; returns how many applied.

    The store keeps the partition's last applied offset with the states (one transaction).
    Offsets at or below it were applied before a crash or rebalance and are skipped. If the
    store has no position, or one short of this batch (Redis lost its data, or came back
    from an old snapshot), `replay` first rebuilds the states from the log. The save
    expects the position it loaded: if another worker applied part of this partition in
    between (its old and new owner overlapping in a rebalance), the batch starts over from
    the new position. `on_applied` gets the events that changed a state once they are stored.
    """
    if not records:
        return 0
    while True:
        try:
            return await _apply_partition_once(records, position, store, limits, replay, live, on_applied,
                                               on_refused, kept)
        except PositionMoved:
            continue


async def _apply_partition_once(records: Sequence[tuple[int, Event]], position: str,
                                store: SessionStore, limits: Limits, replay: Replay | None,
                                live: Live | None, on_applied: OnApplied | None,
                                on_refused: OnRefused | None, kept: PartitionStates | None) -> int:
    events = [e for _, e in records]
    users = list(dict.fromkeys((e.dataset_group, e.user_key) for e in events))
    names = [position, erasures_name(events[0].dataset_group)]  # one topic: one dataset group

    async def read() -> tuple[dict[Key, SessionState | None], Stamp]:
        known = kept.kept(position, users) if kept is not None else {}
        states, (stored, erased) = await _states(store, events, names, (
            known, lambda found: kept is not None and kept.still(position, (found[0], found[1]))))
        return states, (stored, erased)

    states, (stored, erased) = await read()
    first, last = records[0][0], records[-1][0]
    if replay is not None and (-1 if stored is None else stored) + 1 < first:
        await replay(None if stored is None else stored + 1, first)
        if kept is not None:
            kept.drop(position)
        states, (stored, erased) = await read()
    done = -1 if stored is None else stored
    fresh = [e for offset, e in records if offset > done]
    changed, counts, applied, refused = _advance(states, fresh, limits, live)
    if last > done:
        await store.save(changed, {position: last}, counts, expect={position: stored})
    if kept is not None:
        kept.keep(position, (last if last > done else stored, erased), {k: states[k] for k in users})
    if on_applied is not None:
        on_applied(applied)
    _refused(refused, on_refused)
    return len(applied)


async def run_consumer(event_log: EventLog, group: str,
                       handle: Callable[[list[Any]], Awaitable[object]], stop: asyncio.Event, *,
                       postbox: Postbox, topics: str | None = None) -> None:
    """Embedded mode's agents (and the stream worker's dataset writer): tail the log as
    `group`, handle a batch, set aside what it cannot handle (stream.dead_letters), commit.

    `handle` writes before the position is committed, so a crash in between redelivers
    events it must recognise by event id (session.apply and the archive both do): the
    effect is exactly once. A store that is down holds the batch until it is back.
    """
    while not stop.is_set():
        records = await event_log.read(group, max_events=1000, timeout_s=0.2, topics=topics)
        if not records:
            continue
        good = [r for r in records if not isinstance(r, Undecodable)]
        failed: list[tuple[Any, BaseException | str]] = [(r, r.error) for r in records
                                                         if isinstance(r, Undecodable)]
        if good:
            failed += await retrying(handle_or_set_aside, good, handle, TRANSIENT, stop=stop)
        await retrying(postbox.send, failed, stop=stop)
        await event_log.commit(group)
