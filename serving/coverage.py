"""`personalize api coverage`: which of Amazon Personalize's operations we implement.

Computed against the botocore service models of the three services (what boto3 calls),
so the list cannot drift from the real API: control plane (JSON 1.1 targets), events and
runtime (rest-json routes).
"""
from __future__ import annotations

from serving import events_api, runtime_api
from serving.control import dispatch

SERVICES = ("personalize", "personalize-events", "personalize-runtime")


def implemented() -> dict[str, set[str]]:
    return {"personalize": set(dispatch.OPERATIONS),
            "personalize-events": set(events_api.OPERATIONS),
            "personalize-runtime": set(runtime_api.OPERATIONS)}


def coverage() -> dict[str, dict[str, list[str]]]:
    """service -> {"implemented": [...], "missing": [...]} (sorted operation names)."""
    try:
        import botocore.loaders
    except ImportError as exc:  # serving-only installs do not carry boto3
        raise SystemExit("`personalize api coverage` needs botocore: pip install boto3") from exc
    loader = botocore.loaders.create_loader()
    done = implemented()
    out = {}
    for service in SERVICES:
        ops = set(loader.load_service_model(service, "service-2")["operations"])
        unknown = done[service] - ops
        assert not unknown, f"{service}: not in botocore's model: {sorted(unknown)}"
        out[service] = {"implemented": sorted(done[service]), "missing": sorted(ops - done[service])}
    return out


def summary(cov: dict[str, dict[str, list[str]]]) -> str:
    total = sum(len(c["implemented"]) + len(c["missing"]) for c in cov.values())
    have = sum(len(c["implemented"]) for c in cov.values())
    lines = [f"{have} of {total} operations implemented"]
    for service, c in cov.items():
        n = len(c["implemented"]) + len(c["missing"])
        lines.append(f"  {service}: {len(c['implemented'])}/{n}: {', '.join(c['implemented']) or '-'}")
    return "\n".join(lines)
