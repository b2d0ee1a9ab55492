#!/usr/bin/env python3
"""Health checks for openpersonalize's containers (standard library only).

docker-compose.yml and k8s/ run these inside the containers (the images carry this file
as /usr/local/bin/opz-healthcheck). Exit 0 = healthy, 1 = not, with one line saying why.

  opz-healthcheck http URL        GET URL answers 2xx within 3 s (the API's /health)
  opz-healthcheck worker          the stream worker's /health answers 200: Kafka answered the
                                  worker within the last minute
  opz-healthcheck worker --alive  the worker answers on its port at all (200 or 503)
  opz-healthcheck trainer         the trainer's /health answers 200: its control store (SQLite
                                  or PostgreSQL) answered it within the last minute

The worker and the trainer serve /health beside /metrics on OPZ_METRICS_PORT (bound to
OPZ_HOST), so each check asks the process itself what it knows.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def check_http(url: str, timeout_s: float = 3.0, alive_only: bool = False) -> str | None:
    """None when `url` answers 2xx (or anything at all, with `alive_only`), else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own URL
            return None if 200 <= response.status < 300 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        if alive_only:
            return None
        return f"{url} answered {exc.code}: {said(exc.read())}"
    except OSError as exc:
        return f"{url}: {exc}"


def said(body: bytes) -> str:
    """A /health body in one line: `status`, then what it says of each service."""
    try:
        return ", ".join(f"{k} {v}" for k, v in json.loads(body).items())
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:200]


def health_url(env: Mapping[str, str]) -> str | None:
    """The /health of this container's worker or trainer: OPZ_METRICS_PORT on OPZ_HOST (loopback
    when it binds every address). None: no port is set, so the process serves no health."""
    port = env.get("OPZ_METRICS_PORT", "0")
    if not port.isdigit() or int(port) == 0:
        return None
    host = env.get("OPZ_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARDS else host
    return f"http://{f'[{host}]' if ':' in host and not host.startswith('[') else host}:{port}/health"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="opz-healthcheck", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="check", required=True)
    http = sub.add_parser("http", help="GET URL answers 2xx")
    http.add_argument("url")
    worker = sub.add_parser("worker", help="the stream worker's /health: Kafka answers it")
    worker.add_argument("--alive", action="store_true", help="only check that the worker answers")
    sub.add_parser("trainer", help="the trainer's /health: its control store answers it")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.check == "http":
        problem = check_http(args.url)
    elif (url := health_url(os.environ)) is None:
        problem = f"OPZ_METRICS_PORT is not set: the {args.check} serves its /health on that port"
    else:
        problem = check_http(url, alive_only=getattr(args, "alive", False))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
