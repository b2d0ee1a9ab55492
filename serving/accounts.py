"""Accounts and regions: whose request this is, and which resources it may see.

Every resource's ARN names the account whose key created it and the region the creating
client was configured for. The signature check (serving/auth.py) sets the caller's account
for the request, and its region from the request's signing scope (what boto3, the CLI and
the JS SDK sign with); a server without keys serves everyone as its one configured account
(`OPZ_ACCOUNT`), and a request with no signing scope in the server's region (`OPZ_REGION`).
An ARN of another account or another region is answered as if it did not exist, as AWS
does (its resources are regional), so its existence is not disclosed.
"""
from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple


class Caller(NamedTuple):
    account: str
    region: str | None  # None: the request named no region (unsigned)


_CALLER: ContextVar[Caller | None] = ContextVar("opz_caller", default=None)


def caller(default: str) -> str:
    """The account of the request being answered (`default` outside a request: jobs, tests)."""
    current = _CALLER.get()
    return current.account if current is not None else default


def caller_region(default: str) -> str:
    """The region the request was signed for (`default`, the server's, when it named none)."""
    return signed_region() or default


def signed_region() -> str | None:
    """The region the request was signed for; None for an unsigned one or outside a request."""
    current = _CALLER.get()
    return current.region if current is not None else None


def serve_as(account: str, region: str | None = None) -> object:
    """Make `account` (in `region`) the caller for the rest of this request; returns a token
    for `done`."""
    return _CALLER.set(Caller(account, region))


def done(token: object) -> None:
    _CALLER.reset(token)  # type: ignore[arg-type]


def account_of(arn: str) -> str:
    """`arn:aws:personalize:<region>:<account>:<resource>` -> `<account>` ('' if none)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""


def region_of(arn: str) -> str:
    """`arn:aws:personalize:<region>:<account>:<resource>` -> `<region>` ('' if none)."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 else ""


def visible(arn: str, account: str, region: str) -> bool:
    """Whether a caller of `account` in `region` may see the resource `arn` names."""
    return account_of(arn) == account and region_of(arn) == region
