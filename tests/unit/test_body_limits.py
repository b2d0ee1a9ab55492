"""Body caps: a declared size over the cap is refused before any byte is read, a chunked body
as soon as what has arrived passes it, and nothing past the cap ever reaches the app."""
from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from serving.limits import BodyLimits, declared_length

CONTROL, DATA = 1000, 100


def scope(path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


class Client:
    """The server side of one request: the body in chunks, and what is sent back."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks, self.received, self.sent = list(chunks), 0, []

    async def receive(self) -> Message:
        self.received += 1
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def answer(self) -> tuple[int, dict[bytes, bytes], Any]:
        start, body = self.sent[0], b"".join(m.get("body", b"") for m in self.sent[1:])
        return start["status"], dict(start["headers"]), orjson.loads(body) if body else None


class ReadingApp:
    """Reads the whole body, as FastAPI does, and answers 200 with its length; a client gone
    mid-body makes it raise, as Starlette's ClientDisconnect does."""

    def __init__(self) -> None:
        self.called, self.body = False, b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                await send({"type": "http.response.start", "status": 400, "headers": []})
                await send({"type": "http.response.body", "body": b"lost"})
                raise ConnectionError("client gone")
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


def run(path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[ReadingApp, Client]:
    app, client = ReadingApp(), Client(chunks)
    asyncio.run(BodyLimits(app, control_bytes=CONTROL, data_bytes=DATA)(
        scope(path, headers), client.receive, client.send))
    return app, client


def test_a_declared_size_over_the_cap_is_refused_before_anything_is_read() -> None:
    app, client = run("/events", [(b"content-length", b"268435456")], [b"x" * 1000])
    status, headers, body = client.answer()
    assert (status, body["__type"]) == (413, "RequestTooLargeException")
    assert "100 bytes" in body["message"] and "OPZ_MAX_DATA_BODY_BYTES" in body["message"]
    assert headers[b"connection"] == b"close"  # uvicorn closes: the rest is not read either
    assert headers[b"x-amzn-errortype"] == b"RequestTooLargeException"
    assert not app.called and client.received == 0


def test_the_control_plane_has_its_own_larger_cap() -> None:
    app, client = run("/", [(b"content-length", b"1000")], [b"x" * 1000])
    assert client.answer()[0] == 200 and app.body == b"x" * 1000
    app, client = run("/", [(b"content-length", b"1001")], [b"x" * 1001])
    assert client.answer()[0] == 413 and "OPZ_MAX_CONTROL_BODY_BYTES" in client.answer()[2]["message"]
    app, client = run("/recommendations", [(b"content-length", b"101")], [b"x" * 101])
    assert client.answer()[0] == 413 and not app.called


def test_a_chunked_body_is_counted_as_it_arrives_and_cut_off_past_the_cap() -> None:
    chunked = [(b"transfer-encoding", b"chunked")]
    app, client = run("/events", chunked, [b"x" * 40] * 1000)  # 40 kB sent, cap 100 B
    status, headers, body = client.answer()
    assert (status, body["__type"], headers[b"connection"]) == (413, "RequestTooLargeException", b"close")
    assert client.received == 3, "reading stops at the chunk that passes the cap"
    assert app.body == b"x" * 80, "the app never sees a byte past the cap"
    assert len(client.sent) == 2, "the app's own answer, after the client is 'gone', is dropped"
    app, client = run("/events", chunked, [b"x" * 50, b"x" * 50])  # exactly the cap
    assert client.answer()[0] == 200 and app.body == b"x" * 100


def test_requests_without_a_body_pass_untouched() -> None:
    app, client = run("/health", [], [b""])
    assert client.answer()[0] == 200 and app.called


@pytest.mark.parametrize(("headers", "expected"), [
    ([(b"host", b"a"), (b"content-length", b"12")], 12),
    ([(b"transfer-encoding", b"gzip, chunked")], None),
    ([(b"host", b"a")], 0),
])
def test_declared_length(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    assert declared_length(headers) == expected
