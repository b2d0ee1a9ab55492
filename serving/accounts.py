"""Accounts: whose request this is, and which resources it may see.

Every resource's ARN names the account whose key created it. The signature check
(serving/auth.py) sets the caller's account for the request; a server without keys serves
everyone as its one configured account (`OPZ_ACCOUNT`). An ARN of another account is
answered as if it did not exist, as AWS does, so its existence is not disclosed.
"""
from __future__ import annotations

from contextvars import ContextVar

_CALLER: ContextVar[str | None] = ContextVar("opz_caller_account", default=None)


def caller(default: str) -> str:
    """The account of the request being answered (`default` outside a request: jobs, tests)."""
    return _CALLER.get() or default


def serve_as(account: str) -> object:
    """Make `account` the caller for the rest of this request; returns a token for `done`."""
    return _CALLER.set(account)


def done(token: object) -> None:
    _CALLER.reset(token)  # type: ignore[arg-type]


def account_of(arn: str) -> str:
    """`arn:aws:personalize:<region>:<account>:<resource>` -> `<account>` ('' if none)."""
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 else ""
