"""The per-user session state and its pure transition `apply(state, event, step, limits)`.

No I/O here: the embedded applier and the Faust session agent both call `apply` and
store the result through a SessionStore, so both modes give the same state.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import orjson

from kernel.contract import Event
from kernel.settings import Settings


class Recurrent(Protocol):
    """The deployed model whose recurrent state the workers keep per user (stream/live_state.py
    runs its ONNX graphs; tests use a toy)."""

    model: str  # its solution version ARN

    def rebuild(self, user_key: str, history: Sequence[Interaction]) -> tuple[float, ...]:
        """The state after the user's history (the model's own record of them, then `history`)."""

    def step(self, h: tuple[float, ...], item_id: str, ts: float) -> tuple[float, ...]:
        """The state after one more event."""


@dataclass(frozen=True)
class Limits:
    max_history: int = 200  # max_user_history_length
    session_gap_s: float = 1800.0  # inactivity that starts a new session
    dedupe_window: int = 64  # recent event ids per user: a client retries within seconds


def limits_from(settings: Settings) -> Limits:
    return Limits(max_history=settings.max_user_history_length, session_gap_s=settings.session_gap_seconds)


class Interaction(NamedTuple):
    item: str
    type: str
    ts: float
    value: float | None = None


@dataclass(frozen=True, slots=True)
class SessionState:
    """What serving reads for one user; `model`/`h` are the recurrent state's slot.

    A plain dataclass with a hand-written JSON codec: it is decoded and encoded for every
    user in every batch, and pydantic took 460 us to decode a 100-interaction state.
    """

    session_id: str | None = None
    session_start: float | None = None
    sessions: int = 0  # sessions seen so far (the user-level GRU's step count)
    last_ts: float | None = None
    applied: int = 0  # events applied (duplicates excluded)
    history: tuple[Interaction, ...] = ()  # oldest first, capped at Limits.max_history
    session_items: tuple[str, ...] = ()  # items of the current session, in order
    event_ids: tuple[str, ...] = ()  # dedupe window, oldest first
    model: str | None = None  # solution-version ARN that computed `h`
    h: tuple[float, ...] | None = None  # recurrent state under `model`

    @property
    def seen(self) -> frozenset[str]:
        """Items the user interacted with (within the kept history), for 'exclude seen'."""
        return frozenset(i.item for i in self.history)

    def to_json(self) -> bytes:
        """Layout SESSION_LAYOUT_VERSION 1: a JSON object; history as [item, type, ts, value]."""
        d = {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]
        d["history"] = [tuple(i) for i in self.history]  # orjson refuses tuple subclasses
        return orjson.dumps({k: v for k, v in d.items() if v not in (None, (), [], 0)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> SessionState:
        d = orjson.loads(raw)
        return cls(
            session_id=d.get("session_id"), session_start=d.get("session_start"),
            sessions=d.get("sessions", 0), last_ts=d.get("last_ts"), applied=d.get("applied", 0),
            history=tuple(Interaction(*row) for row in d.get("history", ())),
            session_items=tuple(d.get("session_items", ())),
            event_ids=tuple(d.get("event_ids", ())), model=d.get("model"),
            h=tuple(d["h"]) if d.get("h") is not None else None)


def is_new_session(state: SessionState, event: Event, limits: Limits) -> bool:
    if state.session_id is None or state.session_id != event.session_id:
        return True
    return state.last_ts is not None and event.sent_at - state.last_ts > limits.session_gap_s


def apply(state: SessionState | None, event: Event, recurrent: Recurrent | None = None,
          limits: Limits = Limits(), anonymous: SessionState | None = None) -> SessionState:
    """Advance `state` by `event`; a duplicate event id returns the state unchanged.

    Events are applied in arrival (partition) order; `sent_at` only drives the
    inactivity rule, so a late event from an offline client is still recorded.
    `anonymous`: the state kept under the event's sessionId, for a user's first event in
    that session (see `stitched`). `recurrent`: the model whose state `h` follows the user; a
    state computed by another model (or none yet) is rebuilt from the history first.
    """
    state = state or SessionState()
    if event.event_id in state.event_ids:
        return state
    new = is_new_session(state, event, limits)
    update: dict[str, object] = {
        "applied": state.applied + 1,
        "event_ids": (state.event_ids + (event.event_id,))[-limits.dedupe_window:],
        "last_ts": event.sent_at if state.last_ts is None else max(state.last_ts, event.sent_at),
    }
    items = state.session_items
    if new:
        joined = anonymous is not None and event.user_id not in (None, event.session_id) \
            and anonymous.session_id == event.session_id
        if joined:
            state = stitched(state, anonymous, limits)  # type: ignore[arg-type]
        items = anonymous.session_items if joined else ()  # type: ignore[union-attr]
        update |= {"session_id": event.session_id, "sessions": state.sessions + 1, "session_items": items,
                   "session_start": anonymous.session_start if joined else event.sent_at}  # type: ignore[union-attr]
    if event.item_id is not None:
        hit = Interaction(event.item_id, event.event_type, event.sent_at, event.event_value)
        update["history"] = (state.history + (hit,))[-limits.max_history:]
        update["session_items"] = (items + (event.item_id,))[-limits.max_history:]
        if recurrent is not None:
            h = state.h if state.model == recurrent.model and state.h is not None \
                else recurrent.rebuild(event.user_key, state.history)
            update |= {"model": recurrent.model, "h": recurrent.step(h, event.item_id, event.sent_at)}
    return replace(state, **update)  # type: ignore[arg-type]


def stitched(user: SessionState, anonymous: SessionState, limits: Limits) -> SessionState:
    """A visitor who signs in mid-session: what they did under the sessionId joins the user's
    history, in time order (Amazon Personalize's anonymous-to-known stitching). The recurrent
    state no longer describes that history, so it is dropped and rebuilt."""
    merged = sorted(dict.fromkeys(user.history + anonymous.history), key=lambda i: i.ts)
    return replace(user, history=tuple(merged[-limits.max_history:]), model=None, h=None)
