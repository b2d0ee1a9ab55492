"""The control plane answers only to the names the server is known by (DNS rebinding)."""
from __future__ import annotations

import asyncio

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from serving.hosts import ControlPlaneHosts, allowed_hosts, host_name


@pytest.mark.parametrize(("header", "name"), [
    ("127.0.0.1:8080", "127.0.0.1"), ("LocalHost.:80", "localhost"), ("localhost", "localhost"),
    ("[::1]:8080", "::1"), ("[::1]", "::1"), ("::1", "::1"),
    ("opz-api.openpersonalize.svc", "opz-api.openpersonalize.svc"),
    ("Attacker.Example:8080", "attacker.example"),
])
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_allowed_hosts_are_loopback_the_bound_address_and_the_setting() -> None:
    assert allowed_hosts("", "127.0.0.1") == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("", "0.0.0.0") == {"localhost", "127.0.0.1", "::1", "0.0.0.0"}
    assert allowed_hosts(" api , opz-api.openpersonalize.svc:8080,", "10.0.0.5") == {
        "localhost", "127.0.0.1", "::1", "10.0.0.5", "api", "opz-api.openpersonalize.svc"}
    assert allowed_hosts("api,*", "0.0.0.0") is None


def call(path: str, host: bytes | None, allowed: frozenset[str] | None) -> tuple[int, dict | None]:
    seen: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        raise AssertionError("the body is not read")

    async def send(message: Message) -> None:
        seen.append(message)

    headers = [(b"content-type", b"application/x-amz-json-1.1")] + ([(b"host", host)] if host else [])
    asyncio.run(ControlPlaneHosts(app, allowed)(
        {"type": "http", "method": "POST", "path": path, "headers": headers}, receive, send))
    body = b"".join(m.get("body", b"") for m in seen[1:])
    return seen[0]["status"], orjson.loads(body) if body else None


def test_a_rebinding_page_is_refused_on_the_control_plane_only() -> None:
    allowed = allowed_hosts("", "127.0.0.1")
    status, body = call("/", b"attacker.example:8080", allowed)
    assert status == 403 and body["__type"] == "AccessDeniedException"
    assert "'attacker.example'" in body["message"] and "OPZ_ALLOWED_HOSTS" in body["message"]
    for host in (b"127.0.0.1:8080", b"localhost:8080", b"[::1]:8080", None):
        assert call("/", host, allowed)[0] == 200, host
    for path in ("/events", "/recommendations", "/personalize-ranking", "/health", "/metrics"):
        assert call(path, b"attacker.example", allowed)[0] == 200, path
    assert call("/", b"attacker.example", None)[0] == 200  # OPZ_ALLOWED_HOSTS=*
