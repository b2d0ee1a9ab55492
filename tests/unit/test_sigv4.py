"""The signature check against requests that botocore itself signs, for each of the three APIs.

botocore's clients build and sign the request; a `before-send` hook hands it to the test
instead of the network, so what is verified is exactly what boto3 would send.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from serving.sigv4 import AuthError, Key, Request, canonical_request, scope_region, signing_key, verify

KEY = Key("AKOPEXAMPLE000000001", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "111111111111")
ENDPOINT = "http://127.0.0.1:8080"


def captured(service: str, call: str, secret: str = KEY.secret, key_id: str = KEY.access_key_id,
             config: Config | None = None, region: str = "us-east-1", **params: Any) -> AWSPreparedRequest:
    """The request `call` would send, as botocore signed it."""
    client = boto3.client(service, endpoint_url=ENDPOINT, region_name=region,
                          aws_access_key_id=key_id, aws_secret_access_key=secret,
                          config=config or Config(retries={"max_attempts": 1}))
    sent: list[AWSPreparedRequest] = []

    def grab(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Raw(b"{}"))

    client.meta.events.register("before-send", grab)
    getattr(client, call)(**params)
    return sent[0]


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data


def as_received(p: AWSPreparedRequest, **changes: Any) -> Request:
    """The request as the server's ASGI scope shows it; `changes` as str, as a test writes them."""
    path, _, query = p.url.split("://", 1)[1].partition("/")[2].partition("?")
    body = p.body if isinstance(p.body, bytes) else (p.body or "").encode()
    headers = [(k.lower(), v.decode() if isinstance(v, bytes) else v) for k, v in p.headers.items()]
    headers.append(("host", "127.0.0.1:8080"))
    fields = {"method": p.method, "raw_path": "/" + path, "query": query, "headers": headers} | changes
    return Request(fields["method"], fields["raw_path"].encode(), fields["query"].encode(),
                   [(k.encode(), v.encode()) for k, v in fields["headers"]], changes.get("body", body))


def headers_of(req: Request) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode()) for k, v in req.headers]


def key_of(access_key_id: str) -> Key | None:
    return KEY if access_key_id == KEY.access_key_id else None


def refused(req: Request, now: float | None = None) -> str:
    with pytest.raises(AuthError) as caught:
        verify(req, key_of, time.time() if now is None else now)
    return caught.value.type_name


CALLS = [
    ("personalize", "create_dataset_group", {"name": "movies"}),
    ("personalize", "list_dataset_groups", {}),
    ("personalize-events", "put_events", {"trackingId": "t", "sessionId": "s", "eventList": [
        {"eventType": "click", "itemId": "i 1/é", "sentAt": 1_700_000_000}]}),
    ("personalize-runtime", "get_recommendations", {"campaignArn": "arn:aws:personalize:us-east-1:"
                                                    "111111111111:campaign/c", "userId": "u"}),
]


@pytest.mark.parametrize(("service", "call", "params"), CALLS, ids=[c[1] for c in CALLS])
def test_what_botocore_signs_is_accepted(service: str, call: str, params: dict[str, Any]) -> None:
    assert verify(as_received(captured(service, call, **params)), key_of, time.time()).key == KEY


def test_unsigned_requests_are_missing_a_token() -> None:
    unsigned = captured("personalize", "list_dataset_groups", config=Config(signature_version=UNSIGNED))
    assert refused(as_received(unsigned)) == "MissingAuthenticationTokenException"
    assert refused(as_received(unsigned, headers=[("authorization", "Bearer abc")])) == \
        "MissingAuthenticationTokenException"


def test_an_unknown_key_is_unrecognized() -> None:
    req = captured("personalize", "list_dataset_groups", key_id="AKOPNOBODY0000000000")
    assert refused(as_received(req)) == "UnrecognizedClientException"


def test_a_wrong_secret_or_a_changed_request_is_refused() -> None:
    assert refused(as_received(captured("personalize", "list_dataset_groups", secret="wrong"))) == \
        "InvalidSignatureException"
    signed = captured("personalize", "create_dataset_group", name="movies")
    good = as_received(signed)
    tampered = [
        as_received(signed, body=b'{"name": "other"}'),
        as_received(signed, headers=[(k, "AmazonPersonalize.DeleteDatasetGroup" if k == "x-amz-target"
                                      else v) for k, v in headers_of(good)]),
        as_received(signed, headers=[(k, "attacker.example" if k == "host" else v)
                                     for k, v in headers_of(good)]),
        as_received(signed, raw_path="/events"),
        as_received(signed, method="PUT"),
        as_received(signed, headers=[*headers_of(good), ("x-amz-content-sha256", "0" * 64)]),
        as_received(signed, headers=[(k, v.replace("Signature=", "Signature=0")[:-1] if k == "authorization"
                                      else v) for k, v in headers_of(good)]),
    ]
    for req in tampered:
        assert refused(req) == "InvalidSignatureException", req


def test_a_signature_more_than_15_minutes_off_is_expired() -> None:
    req = as_received(captured("personalize", "list_dataset_groups"))
    assert verify(req, key_of, time.time() + 14 * 60).key == KEY
    for skew in (16 * 60, -16 * 60, -10 * 365 * 86400):
        assert refused(req, time.time() + skew) == "InvalidSignatureException"


def test_a_signature_must_cover_host_and_date() -> None:
    """Even a correct HMAC is refused when it does not cover the Host (DNS rebinding) and the
    date (replay); the request is re-signed by hand over x-amz-target only."""
    good = as_received(captured("personalize", "list_dataset_groups"))
    auth = authorization(good)
    credential = auth.split("Credential=")[1].split(",")[0]
    day = credential.split("/")[1]
    stamp = next(v for k, v in headers_of(good) if k == "x-amz-date")
    by_name = {k: b",".join(v for n, v in good.headers if n == k) for k, _ in good.headers}
    digest = hashlib.sha256(canonical_request(good, by_name, [b"x-amz-target"],
                                              hashlib.sha256(good.body).hexdigest().encode())).hexdigest()
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{day}/us-east-1/personalize/aws4_request\n{digest}"
    signature = hmac.new(signing_key(KEY.secret, day, "us-east-1", "personalize"), to_sign.encode(),
                         hashlib.sha256).hexdigest()
    weak = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=x-amz-target, Signature={signature}"
    req = good._replace(headers=[(k, weak.encode() if k == b"authorization" else v)
                                             for k, v in good.headers])
    assert refused(req) == "InvalidSignatureException"


def authorization(req: Request) -> str:
    return next(v for k, v in headers_of(req) if k == "authorization")


@pytest.mark.parametrize("region", ["ap-southeast-1", "us-gov-west-1", "cn-north-1", "local"])
def test_the_region_a_client_signs_for_is_its_region(region: str) -> None:
    """The region in the credential scope is the one every ARN the caller creates names."""
    req = as_received(captured("personalize", "list_dataset_groups", region=region))
    assert verify(req, key_of, time.time()) == (KEY, region)
    assert scope_region(authorization(req).encode()) == region


def test_a_scope_without_an_arn_safe_region_names_none() -> None:
    good = authorization(as_received(captured("personalize", "list_dataset_groups")))
    assert scope_region(good.encode()) == "us-east-1"
    for region in ("a:b", "", "-x", "123", "x" * 64):
        assert scope_region(good.replace("/us-east-1/", f"/{region}/").encode()) is None, region
    assert scope_region(None) is None and scope_region(b"Bearer abc") is None


def test_a_region_that_cannot_be_in_an_arn_is_refused() -> None:
    good = as_received(captured("personalize", "list_dataset_groups"))
    forged = good._replace(headers=[(k, v.replace(b"/us-east-1/", b"/mars:1/"))
                                                for k, v in good.headers])
    with pytest.raises(AuthError, match="should be scoped to a valid region, not 'mars:1'") as caught:
        verify(forged, key_of, time.time())
    assert caught.value.type_name == "InvalidSignatureException"
