"""DirectRoutes answers the hot routes itself, and every client sees exactly what FastAPI says."""
from __future__ import annotations

import orjson
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.direct_routes import DirectRoutes, read_body, replay
from serving.errors import InvalidInputException, install_error_handlers
from serving.wire import GetRecommendations


def runtime_router() -> APIRouter:
    router = APIRouter()

    @router.post("/recommendations")
    async def recommend(req: GetRecommendations) -> Response:
        if req.campaignArn is None:
            raise InvalidInputException("campaignArn is required")
        if req.userId == "bug":
            raise RuntimeError("a bug")
        return Response(orjson.dumps(req.model_dump(exclude_none=True)), media_type="application/json")

    return router


class Spy:
    """Middleware just inside DirectRoutes: the requests it passed on to FastAPI."""

    seen = 0

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        Spy.seen += scope["type"] == "http"
        await self.app(scope, receive, send)


def apps() -> tuple[TestClient, TestClient]:
    """FastAPI alone, and the same app with DirectRoutes as create_app adds it (innermost)."""
    Spy.seen = 0
    plain, fast = FastAPI(), FastAPI()
    for app in (plain, fast):
        install_error_handlers(app)
        router = runtime_router()
        app.include_router(router)
    fast.add_middleware(Spy)
    fast.add_middleware(DirectRoutes, routes=router.routes, paths=["/recommendations"])
    return TestClient(plain, raise_server_exceptions=False), TestClient(fast, raise_server_exceptions=False)


ARN = b"arn:aws:personalize:us-east-1:000000000000:campaign/c"
VALID = b'{"campaignArn": "' + ARN + b'", "userId": "u1", "numResults": 5}'


@pytest.mark.parametrize(("body", "content_type", "direct"), [
    (VALID, "application/json", True),
    (VALID, "application/json; charset=utf-8", True),
    (VALID, "Application/JSON", True),
    (b'{"userId": "u1"}', "application/json", True),  # the endpoint's own InvalidInputException
    (b'{"campaignArn": "' + ARN + b'", "userId": "bug"}', "application/json", True),  # 500 InternalFailure
    (b'{"campaignArn": "' + ARN + b'", "numResults": "many"}', "application/json", False),  # botocore's
    (b'{"campaignArn": "arn:c"}', "application/json", False),  # botocore's model: not an ARN
    (b'{"campaignArn": "' + ARN + b'", "unknown": 1}', "application/json", False),
    (b'{"campaignArn": "' + b"a" * 300 + b'"}', "application/json", False),
    (b"{not json", "application/json", False),
    (b"[1, 2]", "application/json", False),
    (b"", "application/json", False),
    (VALID, None, False),
    (VALID, "text/plain", False),
    (VALID, "application/vnd.api+json", False),
])
def test_the_same_answer_as_fastapi(body: bytes, content_type: str | None, direct: bool) -> None:
    plain, fast = apps()
    headers = {"content-type": content_type} if content_type else {}
    want = plain.post("/recommendations", content=body, headers=headers)
    got = fast.post("/recommendations", content=body, headers=headers)
    assert (got.status_code, got.content) == (want.status_code, want.content)
    assert got.headers.get("content-type") == want.headers.get("content-type")
    assert got.headers.get("x-amzn-errortype") == want.headers.get("x-amzn-errortype")
    assert Spy.seen == (0 if direct else 1), "answered by the wrong path"


def test_other_paths_and_methods_go_to_fastapi() -> None:
    _, fast = apps()
    assert fast.get("/recommendations").status_code == 405
    assert fast.post("/other", content=VALID, headers={"content-type": "application/json"}).status_code == 404
    assert Spy.seen == 2


def test_a_route_whose_endpoint_takes_no_single_model_is_refused() -> None:
    router = APIRouter()

    @router.post("/x")
    async def x(a: int, b: int) -> None:
        pass

    with pytest.raises(TypeError, match="one pydantic model"):
        DirectRoutes(FastAPI(), routes=router.routes, paths=["/x"])
    with pytest.raises(ValueError, match="no POST route"):
        DirectRoutes(FastAPI(), routes=router.routes, paths=["/y"])


def messages(*items: Message) -> Receive:
    queue = list(items)

    async def receive() -> Message:
        return queue.pop(0)

    return receive


async def test_a_body_in_chunks_is_read_whole_and_a_disconnect_is_handed_on() -> None:
    receive = messages({"type": "http.request", "body": b'{"a"', "more_body": True},
                       {"type": "http.request", "body": b": 1}", "more_body": False})
    assert await read_body(receive) == (b'{"a": 1}', None)
    gone = {"type": "http.disconnect"}
    receive = messages({"type": "http.request", "body": b"{", "more_body": True}, gone)
    body, pending = await read_body(receive)
    assert (body, pending) == (b"{", gone)
    again = replay(body, pending, messages())
    assert await again() == {"type": "http.request", "body": b"{", "more_body": True}
    assert await again() == gone


@pytest.mark.parametrize(("body", "type_name", "member"), [
    (b'{"campaignArn": "' + ARN + b'", "numResults": "5"}', "SerializationException", "numResults"),
    (b'{"campaignArn": "' + ARN + b'", "filterValues": {'
     + b", ".join(b'"k%d": "v"' % i for i in range(26)) + b"}}", "InvalidInputException", "filterValues"),
])
def test_what_botocore_forbids_is_answered_by_type(body: bytes, type_name: str, member: str) -> None:
    _, fast = apps()
    got = fast.post("/recommendations", content=body, headers={"content-type": "application/json"})
    assert (got.status_code, got.json()["__type"]) == (400, type_name)
    assert got.json()["message"].startswith(f"{member}: ")
