"""AWS Signature Version 4, checked: the server's half of what boto3, the AWS CLI and the AWS
SDK for JavaScript do to every request they send.

`verify` is pure (no I/O, the clock and the key lookup passed in), so it is tested against
requests that botocore itself signs. Its errors are the ones botocore knows, each with the
message AWS gives, and never say which part of a signature was wrong: a caller learns
only that the request was refused.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from calendar import timegm
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import quote_from_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "personalize"  # the signing name of all three APIs (personalize, -events, -runtime)
MAX_SKEW_S = 15 * 60
_ALGORITHM = ALGORITHM.encode()
_AUTH = re.compile(rb"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
                   rb"\s*Signature=([0-9a-f]{64})\s*")
# a region becomes part of every ARN the caller creates: any name botocore takes for one (a
# host label, so no ':' or '/'), so a local setup's made-up region works as AWS's own do
REGION = re.compile(r"(?![0-9]+$)(?!-)[a-zA-Z0-9-]{1,63}(?<!-)")


class AuthError(Exception):
    """A refused request: `type_name` is the error code botocore raises (HTTP 403)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name, self.message = type_name, message


def missing() -> AuthError:
    return AuthError("MissingAuthenticationTokenException", "Missing Authentication Token")


def unrecognized() -> AuthError:
    return AuthError("UnrecognizedClientException",
                     "The security token included in the request is invalid.")


def mismatch() -> AuthError:
    return AuthError("InvalidSignatureException",
                     "The request signature we calculated does not match the signature you provided. "
                     "Check your AWS Secret Access Key and signing method.")


class Request(NamedTuple):
    """What a signature covers, as the ASGI scope holds it: the path still percent-encoded,
    header names lower-case (repeated headers as repeated pairs), all as bytes on the wire."""

    method: str
    raw_path: bytes
    query: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str
    account: str


class Signed(NamedTuple):
    """Who signed a request, and for which region: the one every ARN it creates names."""

    key: Key
    region: str


class _Scope(NamedTuple):
    access_key_id: str
    day: str
    region: str
    service: str
    scope: bytes  # day/region/service/aws4_request
    day_bytes: bytes
    region_ok: bool  # a region an ARN can name


def verify(req: Request, key_of: Callable[[str], Key | None], now: float) -> Signed:
    """The key that signed `req` and the region it signed for, or AuthError. `key_of` finds a
    key by its access key id. Every request of a signed server passes through here, so it
    reads the headers once, as bytes, and what repeats between requests (a credential scope,
    a signed-header list, a path) is parsed once and cached."""
    authorization = stamp = claimed = None
    for name, value in req.headers:
        if name == b"authorization":
            authorization = value if authorization is None else authorization
        elif name == b"x-amz-date":
            stamp = value if stamp is None else stamp
        elif name == b"x-amz-content-sha256":
            claimed = value if claimed is None else claimed
    if authorization is None:
        raise missing()
    m = _AUTH.fullmatch(authorization.strip())
    if m is None:
        raise mismatch() if authorization.startswith(ALGORITHM.encode()) else missing()
    credential, signed_headers, signature = m.groups()
    scope = _credential(credential)
    key = key_of(scope.access_key_id)
    if key is None:
        raise unrecognized()
    if not scope.region_ok:
        raise AuthError("InvalidSignatureException",
                        f"Credential should be scoped to a valid region, not '{scope.region[:64]}'.")
    names = _signed_names(signed_headers)
    if stamp is None or scope.service != SERVICE or not stamp.startswith(scope.day_bytes):
        raise mismatch()
    _check_time(stamp, now)
    body_hash = hashlib.sha256(req.body).hexdigest().encode()
    if claimed is not None and claimed != body_hash:
        raise mismatch()
    values: dict[bytes, bytes] = {}
    for name, value in req.headers:
        if name in names:
            value = b" ".join(value.split())
            values[name] = values[name] + b"," + value if name in values else value
    digest = hashlib.sha256(canonical_request(req, values, names, claimed or body_hash)).hexdigest()
    inner, outer = _hmac_pads(key.secret, scope.day, scope.region, SERVICE)
    inner, outer = inner.copy(), outer.copy()
    inner.update(b"\n".join((_ALGORITHM, stamp, scope.scope, digest.encode())))
    outer.update(inner.digest())
    if not hmac.compare_digest(outer.hexdigest().encode(), signature):
        raise mismatch()
    return Signed(key, scope.region)


def scope_region(authorization: bytes | None) -> str | None:
    """The region of an Authorization header's credential scope, if it names a valid one. Its
    signature is not checked here: `verify` does that where calls must be signed."""
    m = _AUTH.fullmatch((authorization or b"").strip())
    try:
        scope = _credential(m.group(1)) if m else None
    except AuthError:
        return None
    return scope.region if scope is not None and scope.region_ok else None


def canonical_request(req: Request, values: dict[bytes, bytes], signed: Sequence[bytes],
                      payload_hash: bytes) -> bytes:
    """`values`: the canonical value of each signed header (trimmed, repeats comma-joined)."""
    try:
        lines = b"".join([name + b":" + values[name] + b"\n" for name in signed])
    except KeyError:
        raise mismatch() from None  # a header said to be signed that the request does not carry
    return b"\n".join((req.method.upper().encode(), canonical_path(req.raw_path),
                        canonical_query(req.query), lines, b";".join(signed), payload_hash))


@lru_cache(maxsize=1024)
def canonical_path(raw_path: bytes) -> bytes:
    """The path as every SigV4 signer but S3's sees it: dot segments removed, then each
    character outside the unreserved set encoded once more."""
    segments: list[bytes] = []
    for seg in raw_path.split(b"/"):
        if seg == b"..":
            if segments:
                segments.pop()
        elif seg not in (b".", b""):
            segments.append(seg)
    path = b"/" + b"/".join(segments) + (b"/" if raw_path.endswith(b"/") and segments else b"")
    return quote_from_bytes(path, safe="/~").encode()


def canonical_query(query: bytes) -> bytes:
    """The query's pairs as sent (already encoded by the signer), sorted."""
    if not query:
        return b""
    pairs = sorted(part.partition(b"=")[::2] for part in query.split(b"&"))
    return b"&".join(k + b"=" + v for k, v in pairs)


@lru_cache(maxsize=1024)
def _credential(credential: bytes) -> _Scope:
    """`AKID/day/region/service/aws4_request`, parsed; the same for every request of a client
    on one day."""
    parts = credential.decode("latin-1").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise mismatch()
    access_key_id, day, region, service, _ = parts
    return _Scope(access_key_id, day, region, service, credential.split(b"/", 1)[1], day.encode(),
                  REGION.fullmatch(region) is not None)


@lru_cache(maxsize=256)
def _signed_names(signed_headers: bytes) -> tuple[bytes, ...]:
    """The signed header names, which must cover the Host (against DNS rebinding) and the date
    (against replay), sorted and unique as every signer sends them."""
    names = tuple(signed_headers.split(b";"))
    if b"host" not in names or b"x-amz-date" not in names or list(names) != sorted(set(names)):
        raise mismatch()
    return names


@lru_cache(maxsize=256)
def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """Derived once per key, day, region and service (four HMACs) rather than per request."""
    k = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    return k


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


@lru_cache(maxsize=256)
def _hmac_pads(secret: str, day: str, region: str, service: str) -> tuple[Any, Any]:
    """HMAC-SHA256 under the signing key, its inner and outer pads hashed once: a request's
    HMAC then costs two hash copies, half of what `hmac.digest` spends on set-up."""
    key = signing_key(secret, day, region, service).ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key)))


@lru_cache(maxsize=64)
def _epoch(stamp: bytes) -> int | None:
    """`stamp` in ISO 8601 basic format (20260101T000000Z), as every SigV4 signer sends it."""
    if (len(stamp) != 16 or stamp[8:9] != b"T" or stamp[15:16] != b"Z"
            or not (stamp[:8] + stamp[9:15]).isdigit()):
        return None
    try:
        return timegm((int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                       int(stamp[11:13]), int(stamp[13:15]), 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def _check_time(stamp: bytes, now: float) -> None:
    signed_at = _epoch(stamp)
    if signed_at is None:
        raise mismatch()
    if abs(now - signed_at) > MAX_SKEW_S:
        raise AuthError("InvalidSignatureException",
                        "Signature expired: the request was signed more than 15 minutes from the "
                        "server's time.")
