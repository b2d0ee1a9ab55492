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
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "personalize"  # the signing name of all three APIs (personalize, -events, -runtime)
MAX_SKEW_S = 15 * 60
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
                   r"\s*Signature=([0-9a-f]{64})\s*")
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


@dataclass(frozen=True)
class Request:
    """What a signature covers, as it arrived: the path still percent-encoded, header names
    lower-case (repeated headers as repeated pairs)."""

    method: str
    raw_path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret: str
    account: str


def verify(req: Request, key_of: Callable[[str], Key | None], now: float) -> Key:
    """The key that signed `req`, or AuthError. `key_of` finds a key by its access key id."""
    headers: dict[str, list[str]] = {}
    for name, value in req.headers:
        headers.setdefault(name, []).append(value)
    authorization = _first(headers, "authorization")
    if authorization is None:
        raise missing()
    m = _AUTH.fullmatch(authorization.strip())
    if m is None:
        raise mismatch() if authorization.startswith(ALGORITHM) else missing()
    credential, signed_headers, signature = m.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise mismatch()
    access_key_id, day, region, service, _ = parts
    key = key_of(access_key_id)
    if key is None:
        raise unrecognized()
    if not REGION.fullmatch(region):
        raise AuthError("InvalidSignatureException",
                        f"Credential should be scoped to a valid region, not '{region[:64]}'.")
    stamp = _first(headers, "x-amz-date")
    names = signed_headers.split(";")
    if (stamp is None or service != SERVICE or not stamp.startswith(day) or "host" not in names
            or "x-amz-date" not in names or names != sorted(set(names))):
        raise mismatch()
    _check_time(stamp, now)
    body_hash = hashlib.sha256(req.body).hexdigest()
    claimed = _first(headers, "x-amz-content-sha256")
    if claimed is not None and claimed != body_hash:
        raise mismatch()
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join((ALGORITHM, stamp, scope, hashlib.sha256(
        canonical_request(req, headers, names, claimed or body_hash).encode()).hexdigest()))
    expected = hmac.digest(signing_key(key.secret, day, region, service), string_to_sign.encode(),
                           "sha256").hex()
    if not hmac.compare_digest(expected, signature):
        raise mismatch()
    return key


def scope_region(authorization: str | None) -> str | None:
    """The region of an Authorization header's credential scope, if it names a valid one. Its
    signature is not checked here: `verify` does that where calls must be signed."""
    m = _AUTH.fullmatch((authorization or "").strip())
    parts = m.group(1).split("/") if m else []
    return parts[2] if len(parts) == 5 and REGION.fullmatch(parts[2]) else None


def canonical_request(req: Request, headers: dict[str, list[str]], signed: Sequence[str],
                      payload_hash: str) -> str:
    """`headers`: the request's headers by lower-case name."""
    lines = "".join(f"{name}:{_canonical_value(headers, name)}\n" for name in signed)
    return "\n".join((req.method.upper(), canonical_path(req.raw_path), canonical_query(req.query),
                      lines, ";".join(signed), payload_hash))


@lru_cache(maxsize=1024)
def canonical_path(raw_path: str) -> str:
    """The path as every SigV4 signer but S3's sees it: dot segments removed, then each
    character outside the unreserved set encoded once more."""
    segments: list[str] = []
    for seg in raw_path.split("/"):
        if seg == "..":
            if segments:
                segments.pop()
        elif seg not in (".", ""):
            segments.append(seg)
    path = "/" + "/".join(segments) + ("/" if raw_path.endswith("/") and segments else "")
    return quote(path, safe="/~")


def canonical_query(query: str) -> str:
    """The query's pairs as sent (already encoded by the signer), sorted."""
    pairs = sorted(part.partition("=")[::2] for part in query.split("&")) if query else []
    return "&".join(f"{k}={v}" for k, v in pairs)


@lru_cache(maxsize=256)
def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """Derived once per key, day, region and service (four HMACs) rather than per request."""
    k = _hmac(("AWS4" + secret).encode(), day)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    return k


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode(), "sha256")


@lru_cache(maxsize=64)
def _epoch(stamp: str) -> int | None:
    """`stamp` in ISO 8601 basic format (20260101T000000Z), as every SigV4 signer sends it."""
    if len(stamp) != 16 or stamp[8] != "T" or stamp[15] != "Z" or not (stamp[:8] + stamp[9:15]).isdigit():
        return None
    try:
        return timegm((int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]), int(stamp[9:11]),
                       int(stamp[11:13]), int(stamp[13:15]), 0, 0, 0))
    except (ValueError, OverflowError):
        return None


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def _canonical_value(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    if not values:
        raise mismatch()  # a header said to be signed that the request does not carry
    return ",".join(" ".join(v.split()) for v in values)


def _check_time(stamp: str, now: float) -> None:
    signed_at = _epoch(stamp)
    if signed_at is None:
        raise mismatch()
    if abs(now - signed_at) > MAX_SKEW_S:
        raise AuthError("InvalidSignatureException",
                        "Signature expired: the request was signed more than 15 minutes from the "
                        "server's time.")
