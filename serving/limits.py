"""Limits on what a client may send, applied before anything reads it: the size of a body and
of a request's head, and how long a request may take to arrive.

`BodyLimits` (ASGI middleware) refuses a body above its route's cap with 413 before the app
reads it: a Content-Length above the cap at once, a chunked body as soon as the bytes
received pass the cap (counted as they stream, never held whole). Uvicorn reads only 64 KiB
ahead of the app, so nothing else holds more of it.

`SlowClients` (uvicorn's httptools protocol, extended) adds what uvicorn leaves out, below the
app: a request's head (request line and headers) must arrive within `read_timeout_s` and stay
under `max_head_bytes` (httptools accepted 2 MB of headers), and its body must then arrive
within `read_timeout_s` too (else a client that stalls mid-request holds its connection
forever). One timer per server sweeps the connections several times a second and sets and
checks their deadlines, so a request starts no timer and reads no clock (asyncio.timeout
around a receive cost ~7 us under uvloop); deadlines are as exact as the sweep (a quarter of
`read_timeout_s`, at most 1 s).

Every refusal is in Personalize's error shape and closes the connection, so the rest of an
upload is never read.
"""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving.errors import PersonalizeError, RequestTooLargeException, error_response

CONTROL_PATH = "/"
DISCONNECT: Message = {"type": "http.disconnect"}
PENDING = -1.0


def declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The body's size as the head declares it: its Content-Length, None when it is chunked (its
    size is known once it has arrived), 0 when neither (a request without a body)."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # not reached: httptools refuses a malformed Content-Length itself
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return None
    return 0


class BodyLimits:
    """ASGI middleware: at most `control_bytes` for the control plane (POST /), `data_bytes` for
    every other route (the events and runtime APIs; the rest take no body)."""

    def __init__(self, app: ASGIApp, control_bytes: int, data_bytes: int) -> None:
        self.app = app
        self.caps = {True: (control_bytes, "OPZ_MAX_CONTROL_BODY_BYTES"),
                     False: (data_bytes, "OPZ_MAX_DATA_BODY_BYTES")}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap, setting = self.caps[scope["path"] == CONTROL_PATH]
        size = declared_length(scope["headers"])
        if size is not None:
            if size <= cap:  # the parser delivers no more than the Content-Length
                await self.app(scope, receive, send)
            else:
                await too_large(cap, setting)(scope, receive, send)
            return
        body = Counted(scope, receive, send, cap, setting)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:
            if not body.refused:
                raise  # else: the app's complaint about the body it lost; the 413 is sent


def too_large(cap: int, setting: str) -> Response:
    return error_response(RequestTooLargeException(
        f"the request body is over {cap} bytes, the most this route takes ({setting})"))


class Counted:
    """A chunked body's receive and send: the body goes to the app while it is within `cap`;
    once past it, this answers 413 itself, tells the app that the client has gone, and drops
    whatever the app sends after."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, cap: int, setting: str) -> None:
        self.scope, self._receive, self._send = scope, receive, send
        self.left, self.cap, self.setting = cap, cap, setting
        self.started = self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return DISCONNECT
        message = await self._receive()
        if message["type"] == "http.request":
            self.left -= len(message.get("body", b""))
            if self.left < 0:
                self.refused = True
                if not self.started:
                    await too_large(self.cap, self.setting)(self.scope, self._receive, self._send)
                return DISCONNECT
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class SlowClients(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request's head (from its first
    byte, or from the connection's start for the first request) and then for its body, and a
    cap on the head's size. Subclass it with the limits set (`slow_clients`); uvicorn builds
    one per connection."""

    read_timeout_s = 30.0
    max_head_bytes = 64 * 1024

    # when the head or body being read must have arrived: None when nothing is being read,
    # PENDING when a head or body has just begun (the sweep sets its deadline, so a request
    # does not read the clock)
    deadline: float | None = None
    in_head = False
    head_bytes = 0  # of the reads that held nothing but the head being read
    last_read = 0
    measure_head = False  # the head may be over the cap: measure it once it is complete
    refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline = PENDING
        _sweep_connections_of(self)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # the answer is sent and the connection closing: the rest is not parsed
        self.last_read = len(data)
        was_in_head = self.in_head
        if was_in_head:
            self.measure_head = True  # the head comes in more than one read
        super().data_received(data)
        if was_in_head and self.in_head:  # httptools holds a header until it is whole: count the
            self.head_bytes += len(data)  # reads that are all head, so one huge header is cut off
            if self.head_bytes > self.max_head_bytes:
                self.refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head = True
        self.head_bytes = 0
        self.measure_head = self.last_read > self.max_head_bytes  # a head within one small read is small
        self.deadline = PENDING

    def on_headers_complete(self) -> None:
        if self.refused:
            return  # no app call for a refused request
        self.in_head = False
        if (self.measure_head or self.last_read > self.max_head_bytes) and head_size(
                self.url, self.headers) > self.max_head_bytes:
            self.refuse_head()
            return
        self.measure_head = False
        self.deadline = PENDING
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self.deadline = None
        super().on_message_complete()

    def refuse_head(self) -> None:
        self.refuse(431, "RequestHeaderFieldsTooLargeException", f"the request line and headers are "
                    f"over {self.max_head_bytes} bytes (OPZ_MAX_HEADER_BYTES)")

    def expire(self) -> None:
        """The head or body did not arrive in time: 408 if a request has begun and is not being
        answered, then close (a connection that never sent anything is just closed)."""
        cycle = self.cycle
        if self.in_head:  # no answer to an earlier request on this connection may be under way
            silent = cycle is None or cycle.response_complete
        else:  # the body (or no request yet, cycle None): the app has not answered this request
            silent = cycle is not None and not cycle.response_started
        if silent:
            self.refuse(408, "RequestTimeoutException",
                        f"the request did not arrive within {self.read_timeout_s:g} s (OPZ_READ_TIMEOUT_S)")
        else:
            self.refused = True
            self.transport.close()

    def refuse(self, status: int, type_name: str, message: str) -> None:
        self.refused, self.deadline = True, None
        error = PersonalizeError(message)
        error.type_name, error.status = type_name, status
        response = error_response(error)
        head = b"".join(k + b": " + v + b"\r\n" for k, v in response.raw_headers)
        self.transport.write(STATUS_LINE[status] + head + b"connection: close\r\n\r\n" + response.body)
        self.transport.close()


def head_size(url: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    return len(url) + sum(len(k) + len(v) + 4 for k, v in headers)  # ": " and CRLF each


def slow_clients(read_timeout_s: float, max_head_bytes: int) -> type[SlowClients]:
    """The protocol class for uvicorn's `http=`, with these limits."""
    return type("SlowClients", (SlowClients,), {"read_timeout_s": read_timeout_s,
                                                "max_head_bytes": max_head_bytes})


_swept: weakref.WeakSet[Any] = weakref.WeakSet()  # the uvicorn servers (their state) swept


def _sweep_connections_of(protocol: SlowClients) -> None:
    """Start the sweep of this protocol's server, once per server."""
    state = protocol.server_state
    if state not in _swept:
        _swept.add(state)
        every = min(1.0, protocol.read_timeout_s / 4)
        protocol.loop.call_later(every, _sweep, protocol.loop, weakref.ref(state), every)


def _sweep(loop: asyncio.AbstractEventLoop, state_ref: weakref.ref[Any], every: float) -> None:
    state = state_ref()
    if state is None:
        return
    now = loop.time()
    for connection in list(state.connections):
        if not isinstance(connection, SlowClients) or connection.deadline is None:
            continue
        if connection.deadline == PENDING:  # begun since the last sweep
            connection.deadline = now + connection.read_timeout_s
        elif now > connection.deadline:
            connection.expire()
    loop.call_later(every, _sweep, loop, state_ref, every)
