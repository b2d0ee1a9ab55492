"""Which Host names the control plane answers to: the guard against DNS rebinding.

A web page on attacker.example can point its own name at 127.0.0.1 once the page has loaded;
its scripts' requests then count as same-origin for the browser and reach a control plane
listening on localhost, carrying `Host: attacker.example`. Answering only the names the
server is known by (the loopback names, the address it is bound to, OPZ_ALLOWED_HOSTS)
refuses them. The data plane (/events, the runtime, /health, /metrics) is left unchecked: load
balancers and browsers reach it under names of their own, and CORS guards it instead.
"""
from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import AccessDeniedException, error_response

CONTROL_PATH = "/"  # the JSON 1.1 control plane: every operation is a POST here
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host: str) -> str:
    """The name in a Host header (or a setting): no port, no brackets, no final dot, lower case.
    "LocalHost.:8080" -> "localhost", "[::1]:8080" -> "::1", "::1" -> "::1"."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def allowed_hosts(setting: str, bound: str) -> frozenset[str] | None:
    """The names the control plane answers to: the loopback names, the bound address and the
    comma-separated `setting`; None when the setting holds "*" (any name)."""
    names = {host_name(n) for n in setting.split(",") if n.strip()}
    if "*" in names:
        return None
    return frozenset(LOOPBACK | {host_name(bound)} | names)


class ControlPlaneHosts:
    """ASGI middleware: a control-plane request whose Host is not allowed answers 403 before
    anything reads it. A request without a Host header is let through: browsers always send
    one, so it cannot be a rebinding page."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str] | None) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == CONTROL_PATH and self.allowed is not None:
            for key, value in scope["headers"]:
                if key == b"host":
                    name = host_name(value.decode("latin-1"))
                    if name not in self.allowed:
                        await refusal(name)(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def refusal(name: str) -> ASGIApp:
    return error_response(AccessDeniedException(
        f"the control plane does not answer to Host {name[:100]!r}: add it to OPZ_ALLOWED_HOSTS "
        "(comma-separated) if clients reach this server by that name"))
