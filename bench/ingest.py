#!/usr/bin/env python3
"""bench/ingest: PutEvents throughput and event-to-state freshness, embedded and Kafka mode.

    .venv/bin/python bench/ingest.py [--modes embedded,kafka] [--duration 10] [--connections 32]

Everything runs on this machine: wrk (the load), `personalize serve`, and in Kafka mode the
broker, Redis and one `personalize stream worker`. Prints a table and writes
bench/results/ingest.json. Goals (issue 5): Kafka mode >= 10,000 events/s in batches of
10 and >= 2,000 single-event calls/s; freshness p99 <= 50 ms (Kafka), <= 10 ms (embedded).
Baseline named in the issue: Amazon Personalize's default PutEvents quota, 1,000 events/s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]
from services import KafkaCluster, RedisServer  # noqa: E402
from support import Server, Worker  # noqa: E402

from stream.stores import Stores, redis_stores, sqlite_stores  # noqa: E402

PERSONALIZE_QUOTA = 1000  # events/s, Amazon Personalize's default PutEvents quota
# The benches measure the most a server does, which the request quotas per campaign and per
# tracker (500 and 1,000 a second by default, serving/rate_limits.py) would cap: every bench
# server runs with them raised far above what it reaches. The check still runs on each request.
UNTHROTTLED = {"OPZ_CAMPAIGN_REQUESTS_PER_SECOND": "1000000", "OPZ_TRACKER_REQUESTS_PER_SECOND": "1000000"}
GOALS = {"batch10_events_per_s": {"kafka": 10_000}, "single_calls_per_s": {"kafka": 2_000},
         "freshness_p99_ms": {"kafka": 50, "embedded": 10}}


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each process and its threads, from /proc (clock ticks -> s)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            out[name] = 0.0
    return out


def wrk(url: str, tracking_id: str, *, batch: int, duration: int, connections: int) -> dict[str, float]:
    env = {**os.environ, "TRACKING_ID": tracking_id, "BATCH": str(batch), "PREFIX": uuid.uuid4().hex[:8]}
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency",
                          "-s", str(ROOT / "bench" / "putevents.lua"), url + "/events"],
                         env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT"))
    calls, non2xx, socket_errors, p50, p99, secs = line.split()[1:]
    ok = int(calls) - int(non2xx)
    return {"calls": int(calls), "non2xx": int(non2xx), "socket_errors": int(socket_errors),
            "events": ok * batch, "seconds": float(secs), "calls_per_s": ok / float(secs),
            "events_per_s": ok * batch / float(secs), "latency_p50_ms": float(p50),
            "latency_p99_ms": float(p99)}


async def freshness(url: str, tracking_id: str, store: Stores, dsg: str, n: int) -> list[float]:
    """ms from PutEvents' 200 to the user's state showing the event (store polled in a loop)."""
    out = []
    await store.start()
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for i in range(n):
                user = f"fresh-{i % 20}"
                (before,), _ = await store.sessions.load([(dsg, user)])
                seen = before.applied if before else 0
                r = await http.post(url + "/events", json={
                    "trackingId": tracking_id, "userId": user, "sessionId": "s",
                    "eventList": [{"eventId": f"f{i}-{uuid.uuid4().hex[:6]}", "eventType": "click",
                                   "itemId": f"i{i}", "sentAt": time.time()}]})
                acked = time.perf_counter()
                assert r.status_code == 200, r.text
                while True:
                    (state,), _ = await store.sessions.load([(dsg, user)])
                    if state is not None and state.applied > seen:
                        break
                    if time.perf_counter() - acked > 10:
                        raise TimeoutError("event never reached the state")
                out.append((time.perf_counter() - acked) * 1000)
    finally:
        await store.close()
    return out


async def wait_applied(store: Stores, dsg: str, users: list[str], total: int,
                       timeout: float = 300) -> float:
    """Seconds until the states account for `total` events (the stream caught up)."""
    t0 = time.perf_counter()
    await store.start()
    try:
        while time.perf_counter() - t0 < timeout:
            states, _ = await store.sessions.load([(dsg, u) for u in users])
            if sum(s.applied for s in states if s) >= total:
                return time.perf_counter() - t0
            await asyncio.sleep(0.2)
        raise TimeoutError(f"states did not reach {total} events")
    finally:
        await store.close()


def run_mode(mode: str, args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    env: dict[str, str] = dict(UNTHROTTLED)
    pids: dict[str, int] = {}
    kafka = redis = None
    name = f"bench{uuid.uuid4().hex[:6]}"
    if mode == "kafka":
        redis = RedisServer(base_dir=tmp / "redis")
        redis.start()
        kafka = KafkaCluster(1, base_dir=tmp / "kafka")
        kafka.start()
        env |= {"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "OPZ_REDIS_URL": redis.url,
                "OPZ_REDIS_PREFIX": name, "OPZ_STREAM_APP_ID": name}
        pids |= {"broker": kafka.pids[0], "redis": redis.proc.pid}  # type: ignore[union-attr]
    tmp.mkdir(parents=True, exist_ok=True)
    server = Server(tmp / "api", env=env).start()
    worker = None
    try:
        control = server.client("personalize")
        dsg_arn = control.create_dataset_group(name=name)["datasetGroupArn"]
        tracking_id = control.create_event_tracker(name=name, datasetGroupArn=dsg_arn)["trackingId"]
        pids["api"] = server.proc.pid  # type: ignore[union-attr]
        if mode == "kafka":
            worker = Worker(tmp, {**env, "OPZ_DATA_DIR": str(tmp / "worker")}).start()
            pids["worker"] = worker.proc.pid  # type: ignore[union-attr]

        def store() -> Stores:
            if mode == "kafka":
                return redis_stores(redis.url, name)  # type: ignore[union-attr]
            return sqlite_stores(server.data_dir / "sessions.db")

        # warm up: topic creation, group join, first compiles
        wrk(server.url, tracking_id, batch=10, duration=2, connections=4)
        users = [f"u{i}" for i in range(1000)]
        asyncio.run(wait_applied(store(), name, users, 1, timeout=120))
        result: dict[str, object] = {}
        for label, batch in (("batch10", 10), ("single", 1)):
            cpu0 = cpu_seconds(pids)
            r = wrk(server.url, tracking_id, batch=batch, duration=args.duration,
                    connections=args.connections)
            lag = asyncio.run(_caught_up(store(), name, users))  # CPU includes the catch-up
            cpu1 = cpu_seconds(pids)
            per_k = {k: (cpu1[k] - cpu0[k]) / r["events"] * 1000 for k in pids}
            result[label] = {**r, "catch_up_s": lag, "cpu_s_per_1000_events": per_k,
                             "applied_events_per_s": r["events"] / (r["seconds"] + lag)}
        fresh = asyncio.run(freshness(server.url, tracking_id, store(), name, args.freshness_events))
        result["freshness_ms"] = {"p50": statistics.median(fresh),
                                  "p99": statistics.quantiles(fresh, n=100)[98],
                                  "max": max(fresh), "n": len(fresh)}
        return result
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        if kafka is not None:
            kafka.stop()
        if redis is not None:
            redis.stop()


async def _caught_up(store: Stores, dsg: str, users: list[str], quiet_s: float = 1.0) -> float:
    """Seconds until the total applied count stops changing for `quiet_s` (stream drained)."""
    t0 = time.perf_counter()
    await store.start()
    try:
        last, since = -1, time.perf_counter()
        while True:
            states, _ = await store.sessions.load([(dsg, u) for u in users])
            total = sum(s.applied for s in states if s)
            if total != last:
                last, since = total, time.perf_counter()
            elif time.perf_counter() - since >= quiet_s:
                return since - t0
            await asyncio.sleep(0.05)
    finally:
        await store.close()


def table(results: dict[str, dict]) -> str:  # type: ignore[type-arg]
    rows = [("figure", *results), ("-" * 34, *["-" * 12] * len(results))]

    def row(label: str, fn) -> None:  # type: ignore[no-untyped-def]
        rows.append((label, *[fn(r) for r in results.values()]))
    def latency(phase: str):  # type: ignore[no-untyped-def]
        return lambda r: f"{r[phase]['latency_p50_ms']:.1f} / {r[phase]['latency_p99_ms']:.1f}"

    def cpu(phase: str):  # type: ignore[no-untyped-def]
        return lambda r: " ".join(f"{k}={v:.3f}" for k, v in r[phase]["cpu_s_per_1000_events"].items())

    row("PutEvents, batches of 10: events/s", lambda r: f"{r['batch10']['events_per_s']:,.0f}")
    row("  call latency p50 / p99 (ms)", latency("batch10"))
    row("  stream catch-up after load (s)", lambda r: f"{r['batch10']['catch_up_s']:.1f}")
    row("  applied to session state: events/s",
        lambda r: f"{r['batch10']['applied_events_per_s']:,.0f}")
    row("  CPU s per 1,000 events", cpu("batch10"))
    row("PutEvents, single event: calls/s", lambda r: f"{r['single']['calls_per_s']:,.0f}")
    row("  call latency p50 / p99 (ms)", latency("single"))
    row("  CPU s per 1,000 events", cpu("single"))
    row("freshness 200 -> state p50 (ms)", lambda r: f"{r['freshness_ms']['p50']:.2f}")
    row("freshness 200 -> state p99 (ms)", lambda r: f"{r['freshness_ms']['p99']:.2f}")
    row("Amazon Personalize default quota", lambda r: f"{PERSONALIZE_QUOTA:,} ev/s")
    return aligned(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="embedded,kafka")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--freshness-events", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ingest.json")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results = {m: run_mode(m, args, tmp / m) for m in args.modes.split(",")}
    print(table(results))
    report = {"machine": f"{os.cpu_count()} cores", "goals": GOALS,
              "baseline": {"amazon_personalize_default_quota_events_per_s": PERSONALIZE_QUOTA},
              "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    write_report(report, args.out, tmp)
    return 0


def aligned(rows: list[list[object]], sep: str = "  ") -> str:
    """The benches' tables: each column as wide as its widest cell."""
    widths = [max(len(str(c)) for c in col) for col in zip(*rows, strict=True)]
    return "\n".join(sep.join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def write_report(report: dict, out: Path, tmp: Path) -> None:
    """Every bench ends so: its JSON beside the others, its scratch directory gone."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
