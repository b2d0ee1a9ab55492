"""Signed calls: every route of the three APIs (and the web console's reads) checks its SigV4
signature once a key exists.

The middleware reads the body (already capped by the limits outside it), verifies the
signature (serving/sigv4.py) against the access keys, and makes the key's account the
caller for the rest of the request (serving/accounts.py), in the region its signing scope
names. Without keys the server is open, every caller being its one account (in the region
the client signed for, if it signed at all): `personalize serve` allows that only on
loopback. CORS preflights and the operational routes (/health, the docs) are not signed;
/metrics, which counts every account's traffic, takes the operator's bearer token instead
(OPZ_METRICS_TOKEN) once calls are signed.
"""
from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import accounts
from serving.access_keys import AccessKeys
from serving.direct_routes import BODY, read_body, replay
from serving.public_trackers import PublicAccess
from serving.sigv4 import AuthError, Request, scope_region, verify

SIGNED_PATHS = frozenset({"/", "/events", "/items", "/users", "/actions", "/action-interactions",
                          "/recommendations", "/personalize-ranking", "/action-recommendations"})
SIGNED_PREFIX = "/console/api/"  # the web console's reads (serving/console.py): the API's data


def is_signed_path(path: str) -> bool:
    return path in SIGNED_PATHS or path.startswith(SIGNED_PREFIX)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(exc: AuthError) -> Response:
    return Response(orjson.dumps({"__type": exc.type_name, "message": exc.message}), status_code=403,
                    media_type="application/x-amz-json-1.1", headers={"x-amzn-ErrorType": exc.type_name})


class SignedCalls:
    """ASGI middleware. `open_account`: whom a request is served as while no key exists (or
    always, when not `enabled`: `OPZ_AUTH=off`). `public_tracker`: what an unsigned PutEvents
    with that trackingId may do (serving/public_trackers.py). `metrics_token`: the bearer
    token /metrics takes while calls are signed (None: none does)."""

    def __init__(self, app: ASGIApp, keys: AccessKeys, open_account: str,
                 public_tracker: Callable[[str], PublicAccess | None], enabled: bool = True,
                 metrics_token: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.app, self.keys, self.open_account = app, keys, open_account
        self.public_tracker, self.enabled, self.clock = public_tracker, enabled, clock
        self.metrics_bearer = b"Bearer " + metrics_token.encode() if metrics_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/metrics" and not self.may_scrape(scope):
            refused = AuthError("AccessDeniedException", "/metrics takes the bearer token set in "
                                "OPZ_METRICS_TOKEN from a server whose calls are signed")
            await refusal(refused)(scope, receive, send)
            return
        if (scope["type"] != "http" or not is_signed_path(scope["path"]) or scope["method"] == "OPTIONS"
                or not self.enabled or not self.keys.required()):
            token = accounts.serve_as(self.open_account, signing_region(scope))
        else:
            body, pending = await read_body(receive)
            try:
                account, region = self.caller(scope, body)
            except AuthError as exc:
                await refusal(exc)(scope, receive, send)
                return
            token = accounts.serve_as(account, region)
            if pending is None:
                scope[BODY] = body
            receive = replay(body, pending, receive)
        try:
            await self.app(scope, receive, send)
        finally:
            accounts.done(token)

    def may_scrape(self, scope: Scope) -> bool:
        if not self.enabled or not self.keys.required():
            return True
        sent = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        return self.metrics_bearer is not None and hmac.compare_digest(sent, self.metrics_bearer)

    def caller(self, scope: Scope, body: bytes) -> tuple[str, str | None]:
        """The account a request acts for and the region it signed for: its key's, or a
        public tracker's (in the tracker's own region) for an unsigned PutEvents on that
        tracker."""
        headers = scope["headers"]
        if scope["path"] == "/events" and not any(k == b"authorization" for k, _ in headers):
            public = self.public_tracker(tracking_id(body))
            if public is not None:
                origin = next((v.decode("latin-1") for k, v in headers if k == b"origin"), None)
                if not public.allows(origin):
                    raise AuthError("AccessDeniedException",
                                    "this event tracker does not take events from that origin")
                return public.account, None
        signed = verify(received(scope, body), self.keys.get, self.clock())
        return signed.key.account, signed.region


def signing_region(scope: Scope) -> str | None:
    """The region an open server's caller signed for, if it signed at all (None: unsigned)."""
    header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
    return scope_region(header) if header is not None else None


def tracking_id(body: bytes) -> str:
    """The trackingId a PutEvents body names ('' when it names none)."""
    try:
        value = orjson.loads(body).get("trackingId")
    except (orjson.JSONDecodeError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def received(scope: Scope, body: bytes) -> Request:
    """What the signature covers, from the ASGI scope: the path as sent (percent-encoded)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    return Request(method=scope["method"], raw_path=raw.split(b"?", 1)[0],
                   query=scope.get("query_string", b""), headers=scope["headers"], body=body)
