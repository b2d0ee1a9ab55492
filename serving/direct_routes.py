"""The runtime's hot POST routes, answered without FastAPI's per-request machinery.

For a GetRecommendations on 10k items FastAPI spent about as long as scoring (~0.25 ms of
~0.9 ms CPU): matching the path against every route, solving dependencies and validating the
body through its generic field adapter. `DirectRoutes` sits inside the app's middleware
(metrics and CORS still see every request) and answers a request to one of its routes whose
body is JSON of the route's model by calling the route's own endpoint with it; anything else
(another content type, a body that is not valid JSON of the model or that botocore's model
forbids) goes on to FastAPI unchanged, so every error a client can see stays exactly FastAPI's.
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import translate
from serving.service_model import Refused

Endpoint = Callable[[Any], Awaitable[Response]]
# the scope key under which a middleware outside that has read the whole body (the signature
# check) leaves it, so that it is not read again through a replaying `receive`
BODY = "opz.body"


class DirectRoutes:
    """ASGI middleware. `routes` is the app's route list, read when the middleware stack is
    built (at the first request, once every router is included); `paths` are the POST routes
    to answer directly, each an endpoint taking one pydantic model and returning a Response."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any], paths: Iterable[str]) -> None:
        self.app = app
        wanted = set(paths)
        self.routes: dict[str, tuple[type[BaseModel], Endpoint]] = {
            r.path: body_route(r) for r in routes
            if isinstance(r, APIRoute) and r.path in wanted and "POST" in r.methods}
        if missing := wanted - set(self.routes):
            raise ValueError(f"no POST route for {sorted(missing)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" \
            else None
        if route is None or not is_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        body, pending = (scope[BODY], None) if BODY in scope else await read_body(receive)
        request = None
        if pending is None and body:
            try:
                request = route[0].model_validate_json(body)  # botocore's model first (Refused)
            except (ValidationError, Refused):
                pass  # FastAPI says what is wrong, in its words, or its handlers what botocore's model does
        if request is None:
            await self.app(scope, replay(body, pending, receive), send)
            return
        try:
            response = await route[1](request)
        except Exception as exc:
            translated = translate(exc)
            if translated is None:
                raise  # a bug: the app's handler for Exception answers 500, as for any route
            response = translated
        await response(scope, receive, send)


def body_route(route: APIRoute) -> tuple[type[BaseModel], Endpoint]:
    """(the body's model, the endpoint) of a route whose endpoint takes exactly one model."""
    params = list(inspect.signature(route.endpoint, eval_str=True).parameters.values())
    if len(params) != 1 or not (isinstance(params[0].annotation, type)
                                and issubclass(params[0].annotation, BaseModel)):
        raise TypeError(f"{route.path}: the endpoint must take one pydantic model, not {params}")
    return params[0].annotation, route.endpoint


def is_json(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """True when the first Content-Type is plain application/json, which FastAPI reads as JSON;
    anything rarer is left to FastAPI to judge."""
    for key, value in headers:
        if key == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The request body, and the message that cut it short (a disconnect), if one did."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay(body: bytes, pending: Message | None, receive: Receive) -> Receive:
    """A receive that hands over what `read_body` already took, then goes on as `receive`."""
    queue: list[Message] = [{"type": "http.request", "body": body, "more_body": pending is not None}]
    if pending is not None:
        queue.append(pending)

    async def again() -> Message:
        return queue.pop(0) if queue else await receive()

    return again
