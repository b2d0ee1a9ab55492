"""Resource quotas per account: Personalize's documented defaults, each one configurable.

A create beyond its quota answers LimitExceededException, as Personalize's does, so one
caller (or one runaway script) cannot fill the control plane. `OPZ_QUOTAS` overrides them
as JSON: `{"*": {"campaign": 20}, "111111111111": {"filter": 50}}` ("*": every account).
"""
from __future__ import annotations

from collections.abc import Mapping

# active resources per account (Personalize: per account and region)
DEFAULTS: dict[str, int] = {"dataset-group": 500, "schema": 500, "dataset": 500, "event-tracker": 500,
                            "solution": 500, "campaign": 5, "filter": 10}


def quota(overrides: Mapping[str, Mapping[str, int]], account: str, kind: str) -> int | None:
    """How many resources of `kind` `account` may have (None: no quota on that kind)."""
    for scope in (account, "*"):
        if kind in overrides.get(scope, {}):
            return overrides[scope][kind]
    return DEFAULTS.get(kind)


def refusal(kind: str, limit: int) -> str:
    return (f"this account already has {limit} {kind.replace('-', ' ')}(s), its quota; delete one or "
            f"raise the quota (OPZ_QUOTAS)")
