"""The control plane: Amazon Personalize's JSON 1.1 protocol on `POST /`.

`X-Amz-Target: AmazonPersonalize.<Operation>` picks a handler from OPERATIONS; an
operation we do not implement yet answers UnknownOperationException naming it. Importing
this module registers every family's handlers (`MODULES`), so the app and
`personalize api coverage` see the same operations.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from serving import service_model
from serving.control import (
    batch,
    campaigns,
    datasets,
    filters,
    groups,
    metric_attributions,
    recipes,
    recommenders,
    segments,
    solutions,
    tags,
)
from serving.control.base import OPERATIONS, TARGET_PREFIX, Ctx
from serving.control.store import Body
from serving.errors import InvalidInputException, UnknownOperationException, validation_message

# their handlers join OPERATIONS
MODULES = (groups, datasets, recipes, solutions, campaigns, filters, batch, segments, tags,
           metric_attributions, recommenders)

def dispatch(target: str | None, raw: bytes, ctx: Ctx) -> Body | Awaitable[Body]:
    if not target or not target.startswith(TARGET_PREFIX):
        raise InvalidInputException(f"missing or unknown X-Amz-Target header: {(target or '')[:80]!r}; "
                                    f"expected {TARGET_PREFIX}<Operation>")
    op = target[len(TARGET_PREFIX):]
    if op not in OPERATIONS:
        if not re.fullmatch(r"[A-Za-z]+", op):
            raise InvalidInputException(f"malformed operation name {op[:80]!r}")
        raise UnknownOperationException(f"operation {op[:80]} is not implemented by openpersonalize yet")
    model, handler = OPERATIONS[op]
    try:
        payload = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError as exc:
        raise InvalidInputException(f"request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInputException("request body must be a JSON object")
    service_model.check("personalize", op, payload)  # Refused: what Personalize itself refuses
    try:
        req = model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidInputException(validation_message(list(exc.errors()))) from None
    return handler(req, ctx)


def make_router(ctx: Ctx) -> APIRouter:
    router = APIRouter(tags=["control plane (JSON 1.1)"])

    @router.post("/", summary="Amazon Personalize control plane (X-Amz-Target dispatch)")
    async def control_plane(request: Request) -> Response:
        body = dispatch(request.headers.get("x-amz-target"), await request.body(), ctx)
        if inspect.isawaitable(body):
            body = await body
        return Response(orjson.dumps(body), media_type="application/x-amz-json-1.1")

    return router
