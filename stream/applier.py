"""Apply a batch of events to the session store: read states once, apply, write once.

Used by the embedded in-process consumer (`run_session_loop`) and by the Faust session
agent, so both modes compute state with the same code.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from stream.contract import Event
from stream.log import EventLog
from stream.session import Limits, SessionState, Step, apply
from stream.store import Key, SessionStore

SESSION_GROUP = "opz-sessions"


async def apply_batch(events: Sequence[Event], store: SessionStore, limits: Limits,
                      step: Step | None = None) -> int:
    """Apply `events` in order; returns how many changed a state (duplicates do not)."""
    keys: list[Key] = list(dict.fromkeys((e.dataset_group, e.user_key) for e in events))
    loaded, _ = await store.load(keys)
    states: dict[Key, SessionState | None] = dict(zip(keys, loaded))
    changed: dict[Key, SessionState] = {}
    applied = 0
    for event in events:
        key = (event.dataset_group, event.user_key)
        new = apply(states[key], event, step, limits)
        if new is not states[key]:
            states[key] = changed[key] = new
            applied += 1
    if changed:
        await store.save(changed)
    return applied


async def run_session_loop(event_log: EventLog, store: SessionStore, limits: Limits,
                           stop: asyncio.Event, group: str = SESSION_GROUP) -> None:
    """Embedded mode's session agent: tail the log, apply, then commit the log position.

    State is written before the position is committed, so a crash in between redelivers
    events that `apply` then recognises by event id: the effect is exactly once.
    """
    while not stop.is_set():
        events = await event_log.read(group, max_events=1000, timeout_s=0.2)
        if events:
            await apply_batch(events, store, limits)
            await event_log.commit(group)
