"""One error hierarchy, translated in one place to Amazon Personalize's wire shape.

`{"__type": "InvalidInputException", "message": "..."}` with the status botocore expects:
the rest-json services (events, runtime) declare 400/404/409; the JSON 1.1 control plane
declares none, so botocore reads `__type` from any 4xx.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from types import MappingProxyType

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from kernel.contract import InvalidEvent
from serving.service_model import Refused
from stream.log import LogUnavailable

log = logging.getLogger(__name__)


class PersonalizeError(Exception):
    type_name = "InternalFailure"
    status = 500
    headers: Mapping[str, str] = MappingProxyType({})  # sent with the error

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputException(PersonalizeError):
    type_name, status = "InvalidInputException", 400


class SerializationException(PersonalizeError):
    """A member of the wrong JSON type (`numResults: "5"`): AWS answers it so, not as invalid input,
    because its deserializer refuses the body before any constraint is checked."""

    type_name, status = "SerializationException", 400


class ResourceNotFoundException(PersonalizeError):
    type_name, status = "ResourceNotFoundException", 404


class ResourceAlreadyExistsException(PersonalizeError):
    type_name, status = "ResourceAlreadyExistsException", 400


class ResourceInUseException(PersonalizeError):
    type_name, status = "ResourceInUseException", 409


class LimitExceededException(PersonalizeError):
    type_name, status = "LimitExceededException", 400


class TooManyTagsException(PersonalizeError):
    type_name, status = "TooManyTagsException", 400


class TooManyTagKeysException(PersonalizeError):
    type_name, status = "TooManyTagKeysException", 400


class InvalidNextTokenException(PersonalizeError):
    type_name, status = "InvalidNextTokenException", 400


class UnknownOperationException(PersonalizeError):
    type_name, status = "UnknownOperationException", 400


class ServiceUnavailableException(PersonalizeError):
    """Our event log (Kafka) did not acknowledge: the client must retry, nothing was stored."""

    type_name, status = "ServiceUnavailableException", 503


class ThrottlingException(PersonalizeError):
    """Over a campaign's or a tracker's request rate (serving/rate_limits.py). Status 400 as
    AWS sends it: botocore's legacy retry handler backs off on this code with 400 only (its
    _retry.json), the standard one on the code; Retry-After tells other clients how long."""

    type_name, status = "ThrottlingException", 400

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class RequestTooLargeException(PersonalizeError):
    """A body over its route's cap (serving/limits.py), refused before it is read; the
    connection is closed so the rest of the upload is not read either."""

    type_name, status = "RequestTooLargeException", 413

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Connection": "close"}


class AccessDeniedException(PersonalizeError):
    type_name, status = "AccessDeniedException", 403


def error_response(exc: PersonalizeError) -> Response:
    body = orjson.dumps({"__type": exc.type_name, "message": exc.message})
    return Response(body, status_code=exc.status, media_type="application/x-amz-json-1.1",
                    headers={"x-amzn-ErrorType": exc.type_name, **exc.headers})


def _field(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_message(errors: list[dict]) -> str:  # type: ignore[type-arg]
    """Pydantic errors -> one message that names each offending field."""
    return "; ".join(f"{_field(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}"
                     for e in errors[:5])


def translate(exc: Exception) -> Response | None:
    """The wire answer to an error a route raised on purpose; None for anything else (a bug,
    answered 500 by the handler installed for Exception). The one mapping of errors to answers:
    the app's exception handlers and serving/direct_routes.py both use it."""
    if isinstance(exc, PersonalizeError):
        return error_response(exc)
    if isinstance(exc, RequestValidationError):
        return error_response(InvalidInputException(validation_message(list(exc.errors()))))
    if isinstance(exc, Refused):  # botocore's model forbids the request (serving/service_model.py)
        kind = SerializationException if exc.wrong_type else InvalidInputException
        return error_response(kind(exc.message))
    if isinstance(exc, InvalidEvent):
        return error_response(InvalidInputException(str(exc)))
    if isinstance(exc, LogUnavailable):
        return error_response(ServiceUnavailableException(str(exc)))
    if isinstance(exc, StarletteHTTPException):
        kind = {404: ResourceNotFoundException, 405: InvalidInputException}.get(
            exc.status_code, InvalidInputException)
        err = kind(str(exc.detail))
        err.status = exc.status_code if exc.status_code < 500 else err.status
        return error_response(err)
    return None


TRANSLATED = (PersonalizeError, RequestValidationError, Refused, InvalidEvent, LogUnavailable,
              StarletteHTTPException)


def install_error_handlers(app: FastAPI) -> None:
    async def _translated(_: Request, exc: Exception) -> Response:
        response = translate(exc)
        assert response is not None, f"{type(exc).__name__} is in TRANSLATED"
        return response

    for kind in TRANSLATED:
        app.add_exception_handler(kind, _translated)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(PersonalizeError(f"internal error: {type(exc).__name__}"))
