#!/usr/bin/env python3
"""bench/auth: what checking SigV4 signatures costs a request.

    .venv/bin/python bench/auth.py [--duration 10] [--connections 16]

Two measurements, in one run:
- In process: `serving.sigv4.verify` on a GetRecommendations request that botocore signed,
  timed over many calls (microseconds per request; the signing key is cached per day).
- End to end: a real embedded `personalize serve` on ml-100k's ratings (import job,
  Popularity-Count, a campaign), driven closed-loop by bench/loadgen.py from its own process
  with GetRecommendations and PutEvents: unsigned while the server has no keys (the
  baseline: what every earlier bench measured), then, same server and data, signed with a key
  made by `personalize keys create` (the requests are signed before the clock starts); the
  key is deleted again and the pair repeated (`--rounds`, after one unsigned warm-up pass), so
  that load from outside the bench falls on both alike, and each mode's median round is
  compared. Beside each row, the server process's CPU time per request, counted from the
  row's start until its consumers have caught up: the cost itself, which the rate (shared
  with the load generator on the same cores) shows only through noise.
Prints a table with the run's load average and writes bench/results/auth.json.
Goal (issue): signed calls cost <= 10% of the unsigned figures.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]
from ingest import UNTHROTTLED, aligned, write_report  # noqa: E402
from serve import INTERACTIONS, drive, import_csv, wait  # noqa: E402
from support import DATASETS, Server  # noqa: E402

from serving.sigv4 import Key, Request, verify  # noqa: E402

GOAL_LOSS = 0.10
SCRAPE = {"Authorization": "Bearer bench-scrape"}  # /metrics of a signed server takes a token
RECIPE = "arn:aws:personalize:::recipe/aws-popularity-count"


def verify_cost(n: int = 20_000) -> float:
    """Microseconds per `verify` of a botocore-signed GetRecommendations."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = Key("AKOPBENCH00000000000", "bench-secret", "000000000000")
    body = b'{"campaignArn": "arn:aws:personalize:us-east-1:000000000000:campaign/c", "userId": "259"}'
    signed = AWSRequest("POST", "http://127.0.0.1:8080/recommendations", data=body,
                        headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key.access_key_id, key.secret), "personalize", "us-east-1").add_auth(signed)
    headers = [(k.lower().encode(), v.encode() if isinstance(v, str) else v)
               for k, v in signed.headers.items()] + [(b"host", b"127.0.0.1:8080")]
    req = Request("POST", b"/recommendations", b"", headers, body)
    now, keys = time.time(), {key.access_key_id: key}
    verify(req, keys.get, now)
    return min(timeit.repeat(lambda: verify(req, keys.get, now), number=n, repeat=3)) / n * 1e6


def deploy(server: Server, csv: Path) -> tuple[str, str]:
    """A Popularity-Count campaign and an event tracker on ml-100k's ratings."""
    control = server.client("personalize")
    group = control.create_dataset_group(name="bench")["datasetGroupArn"]
    import_csv(control, group, "INTERACTIONS", INTERACTIONS, csv)
    solution = control.create_solution(name="bench", datasetGroupArn=group, recipeArn=RECIPE)["solutionArn"]
    version = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    wait(lambda: control.describe_solution_version(solutionVersionArn=version)["solutionVersion"])
    campaign = control.create_campaign(name="bench", solutionVersionArn=version)["campaignArn"]
    tracker = control.create_event_tracker(name="bench", datasetGroupArn=group)["trackingId"]
    return campaign, tracker


def drained(server: Server, timeout_s: float = 120.0) -> None:
    """Wait until the in-process consumers have applied and archived every accepted event: a
    PutEvents row leaves seconds of that work behind, which would slow the row after it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(
            httpx.get(server.url + "/metrics", headers=SCRAPE, timeout=10).text) for s in f.samples}
        accepted = seen.get(("opz_api_events_accepted_total", ()), 0)
        sessions = seen.get(("opz_stream_events_applied_total", ()), 0) + seen.get(
            ("opz_stream_duplicates_skipped_total", (("consumer", "sessions"),)), 0)
        archive = seen.get(("opz_stream_events_archived_total", ()), 0) + seen.get(
            ("opz_stream_duplicates_skipped_total", (("consumer", "archive"),)), 0)
        if sessions >= accepted and archive >= accepted:
            return
        time.sleep(0.5)
    raise TimeoutError("the consumers never caught up")


def rows(server: Server, campaign: str, tracker: str, args: argparse.Namespace,
         sign: dict[str, str] | None) -> dict[str, dict[str, Any]]:
    recs = [{"campaignArn": campaign, "userId": str(u), "numResults": 25} for u in range(1, 944)]
    # other users than those asked for: the signed row must find the same sessions as the unsigned
    events = [{"trackingId": tracker, "userId": f"visitor{u}", "sessionId": f"s{u}", "eventList": [
        {"eventId": f"e{u}", "eventType": "click", "itemId": str(u % 1682 + 1), "sentAt": 1_700_000_000}]}
        for u in range(1, 944)]
    assert server.proc is not None
    out = {}
    for name, path, bodies in (("GetRecommendations", "/recommendations", recs),
                               ("PutEvents", "/events", events)):
        drained(server)
        load, cpu = os.getloadavg()[0], cpu_seconds(server.proc.pid)
        r = drive(server.url, bodies, duration=args.duration, mode="closed", connections=args.connections,
                  path=path, sign=sign)
        assert not r["errors"], r["errors"]
        drained(server)
        served = r["achieved_rps"] * r["seconds"]
        out[name] = {**r, "loadavg_1m": round(load, 2),
                     "server_cpu_us": round((cpu_seconds(server.proc.pid) - cpu) / served * 1e6, 1)}
    return out


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_round(runs: list[dict[str, Any]], op: str) -> dict[str, Any]:
    ordered = sorted((r[op] for r in runs), key=lambda row: row["achieved_rps"])
    return ordered[len(ordered) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5, help="unsigned/signed pairs, alternated")
    args = ap.parse_args()
    report: dict[str, Any] = {"verify_us": round(verify_cost(), 1)}
    tmp = Path(tempfile.mkdtemp(prefix="opz-bench-auth-"))
    env = {**UNTHROTTLED, "OPZ_METRICS_TOKEN": SCRAPE["Authorization"].split()[1]}  # no request quota
    server = Server(tmp / "data", env=env).start()
    try:
        campaign, tracker = deploy(server, DATASETS / "ml-100k" / "interactions.csv")
        rounds: dict[str, list[dict[str, Any]]] = {"unsigned": [], "signed": []}
        rows(server, campaign, tracker, args, None)  # warm-up: caches, allocator, the first drain
        for _ in range(args.rounds):
            rounds["unsigned"].append(rows(server, campaign, tracker, args, None))
            key = server.create_key("000000000000")
            time.sleep(5.5)  # the server looks keys up at most 5 s old
            rounds["signed"].append(rows(server, campaign, tracker, args, key))
            server.keys("delete", key["accessKeyId"], "--last")
            time.sleep(5.5)
    finally:
        server.stop()
    report["rounds"] = rounds
    for mode, runs in rounds.items():
        report[mode] = {op: median_round(runs, op) for op in ("GetRecommendations", "PutEvents")}
    table = [["operation", "unsigned req/s", "signed req/s", "change", "p99 unsigned ms", "p99 signed ms",
              "server CPU us/req", "loadavg"]]
    for op in ("GetRecommendations", "PutEvents"):
        u, s = report["unsigned"][op], report["signed"][op]
        change = s["achieved_rps"] / u["achieved_rps"] - 1
        table.append([op, f"{u['achieved_rps']:,.0f}", f"{s['achieved_rps']:,.0f}", f"{change:+.1%}",
                      f"{u['p99']:.1f}", f"{s['p99']:.1f}", f"{u['server_cpu_us']} / {s['server_cpu_us']}",
                      f"{u['loadavg_1m']} / {s['loadavg_1m']}"])
        report[f"{op}_loss"] = 1 - s["achieved_rps"] / u["achieved_rps"]
    print(f"verify(): {report['verify_us']} us per request (in process)")
    print(aligned(table))
    write_report(report, ROOT / "bench" / "results" / "auth.json", tmp)
    worst = max(report["GetRecommendations_loss"], report["PutEvents_loss"])
    print(f"goal: signed within {GOAL_LOSS:.0%} of unsigned: {'met' if worst <= GOAL_LOSS else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
