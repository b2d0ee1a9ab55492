#!/usr/bin/env python3
"""bench/sustained: the highest PutEvents rate at which the stream keeps up, Kafka mode.

    .venv/bin/python bench/sustained.py [--workers 1,2] [--rates 2000,3000,4000] [--duration 60]

Everything on this machine: one broker, Redis, one `personalize serve`, 1 or 2
`personalize stream worker`s (one consumer group, 4 partitions) and the load generator
(bench/loadgen.py, its own process). Per rate: PutEvents open loop for --duration seconds, 10
events a call over 1,000 users; meanwhile, twice a second, a probe user's click is timed from
PutEvents' 200 to its session state in Redis (freshness). After the load, the seconds until
the states account for every accepted event (the backlog it left). A rate is kept up when the
generator achieved it, freshness p99 stayed <= 50 ms and the backlog drained within 2 s (the
consumer lag stayed bounded). Goal (throughput issue): >= 8,000 events/s. Prints a table and
writes bench/results/sustained.json, with the load average.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT)]
from ingest import UNTHROTTLED  # noqa: E402
from services import KafkaCluster, RedisServer  # noqa: E402
from support import Server, Worker, free_port  # noqa: E402

from stream.stores import Stores, redis_stores  # noqa: E402

GOAL_EVENTS_PER_S, FRESH_P99_MS, DRAIN_S = 8_000, 50.0, 2.0
PER_CALL, USERS = 10, 1000


def bodies(tracking_id: str) -> list[dict[str, Any]]:
    """No eventId: the API gives each event its own, so every call adds 10 new events."""
    return [{"trackingId": tracking_id, "userId": f"u{u}", "sessionId": f"s{u}", "eventList": [
        {"eventType": "click", "itemId": f"i{(u * 7 + k) % 5000}", "sentAt": 1_700_000_000 + k}
        for k in range(PER_CALL)]} for u in range(USERS)]


def load(url: str, tracking_id: str, calls_per_s: float, duration: float) -> subprocess.Popen[str]:
    spec = {"url": url + "/events", "bodies": bodies(tracking_id), "rate": calls_per_s, "duration": duration,
            "mode": "open", "connections": 64, "method": "POST"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    return subprocess.Popen([sys.executable, str(ROOT / "bench" / "loadgen.py"), f.name],
                            stdout=subprocess.PIPE, text=True)


async def applied(stores: Stores, dsg: str, users: list[str]) -> int:
    states, _ = await stores.sessions.load([(dsg, u) for u in users])
    return sum(s.applied for s in states if s)


async def probe(url: str, tracking_id: str, stores: Stores, dsg: str,
                until: float) -> list[tuple[float, float]]:
    """Freshness twice a second until `until`: (when, s since the first probe; ms from a click's
    200 to its state)."""
    out, start = [], time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        i = 0
        while time.monotonic() < until:
            user, i = f"probe-{i % 20}", i + 1
            (before,), _ = await stores.sessions.load([(dsg, user)])
            seen = before.applied if before else 0
            click = {"eventType": "click", "itemId": "p", "sentAt": time.time()}
            r = await http.post(url + "/events", json={"trackingId": tracking_id, "userId": user,
                                                       "sessionId": "p", "eventList": [click]})
            acked = time.perf_counter()
            r.raise_for_status()
            while True:
                (state,), _ = await stores.sessions.load([(dsg, user)])
                if state is not None and state.applied > seen:
                    break
                if time.perf_counter() - acked > 30:
                    break
                await asyncio.sleep(0.001)
            out.append((time.monotonic() - start, (time.perf_counter() - acked) * 1000))
            await asyncio.sleep(max(0.0, 0.5 - (time.perf_counter() - acked)))
    return out


def worker_figures(workers: list[Worker]) -> dict[str, float]:
    """The workers' apply batches so far (count, seconds, events) and their CPU seconds, from
    their /metrics."""
    from prometheus_client.parser import text_string_to_metric_families
    out = {"batches": 0.0, "batch_s": 0.0, "applied": 0.0, "cpu_s": 0.0}
    names = {"opz_stream_apply_batch_duration_seconds_count": "batches",
             "opz_stream_apply_batch_duration_seconds_sum": "batch_s",
             "opz_stream_events_applied_total": "applied", "process_cpu_seconds_total": "cpu_s"}
    for w in workers:
        deadline = time.monotonic() + 60
        while True:  # a worker just started serves its metrics within seconds
            try:
                text = httpx.get(w.metrics_url + "/metrics", timeout=10).text
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in names:
                    out[names[sample.name]] += sample.value
    return out


async def one_rate(url: str, tracking_id: str, stores: Stores, dsg: str, rate: int,
                   duration: float, workers: list[Worker]) -> dict[str, Any]:
    users = [f"u{u}" for u in range(USERS)]
    before = await applied(stores, dsg, users)
    figures = await asyncio.to_thread(worker_figures, workers)
    gen = load(url, tracking_id, rate / PER_CALL, duration)
    timeline = await probe(url, tracking_id, stores, dsg, time.monotonic() + duration)
    fresh = [ms for _, ms in timeline]
    out = json.loads(await asyncio.to_thread(lambda: gen.communicate()[0]))
    accepted = out["statuses"].get("200", 0) * PER_CALL
    ended, drained = time.perf_counter(), None
    while time.perf_counter() - ended < 120:
        if await applied(stores, dsg, users) - before >= accepted:
            drained = time.perf_counter() - ended
            break
        await asyncio.sleep(0.1)
    after = await asyncio.to_thread(worker_figures, workers)
    delta = {k: after[k] - figures[k] for k in after}
    p99 = statistics.quantiles(fresh, n=100)[98] if len(fresh) >= 2 else float("nan")
    achieved = accepted / out["seconds"]
    return {"offered_events_per_s": rate, "achieved_events_per_s": achieved,
            "errors": {k: v for k, v in out["statuses"].items() if k != "200"},
            "freshness_ms": {"p50": statistics.median(fresh), "p99": p99, "max": max(fresh), "n": len(fresh),
                             "over_goal": [(round(t, 2), round(ms)) for t, ms in timeline
                                           if ms > FRESH_P99_MS]},
            "drain_s": drained, "load_average": os.getloadavg()[0],
            "worker": {"events_per_batch": delta["applied"] / max(delta["batches"], 1),
                       "batch_ms": 1000 * delta["batch_s"] / max(delta["batches"], 1),
                       "cpu_s_per_1000_events": 1000 * delta["cpu_s"] / max(delta["applied"], 1)},
            "kept_up": achieved >= 0.98 * rate and p99 <= FRESH_P99_MS and drained is not None
            and drained <= DRAIN_S}


def stack(workers: int, rates: list[int], duration: float, tmp: Path) -> list[dict[str, Any]]:
    name = f"sus{uuid.uuid4().hex[:6]}"
    redis = RedisServer(base_dir=tmp / "redis")
    redis.start()
    kafka = KafkaCluster(1, base_dir=tmp / "kafka")
    kafka.start()
    env = {**UNTHROTTLED, "OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "OPZ_REDIS_URL": redis.url,
           "OPZ_REDIS_PREFIX": name, "OPZ_STREAM_APP_ID": name, "OPZ_KAFKA_PARTITIONS": "4"}
    server = Server(tmp / "api", env=env).start()
    running = []
    try:
        control = server.client("personalize")
        group = control.create_dataset_group(name=name)["datasetGroupArn"]
        tracking_id = control.create_event_tracker(name=name, datasetGroupArn=group)["trackingId"]
        running = [Worker(tmp, {**env, "OPZ_DATA_DIR": str(tmp / f"worker{i}"),
                                "OPZ_METRICS_PORT": str(free_port())}).start() for i in range(workers)]

        async def run() -> list[dict[str, Any]]:
            stores = redis_stores(redis.url, name)
            await stores.start()
            try:
                await one_rate(server.url, tracking_id, stores, name, 1000, 10, running)  # warm: topics, join
                rows = []
                for rate in rates:
                    print(f"{workers} worker(s), {rate:,} events/s ...", file=sys.stderr)
                    rows.append({"workers": workers} | await one_rate(server.url, tracking_id, stores, name,
                                                                      rate, duration, running))
                return rows
            finally:
                await stores.close()
        return asyncio.run(run())
    finally:
        for w in running:
            w.stop()
        server.stop()
        kafka.stop()
        redis.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--rates", default="2000,3000,4000,6000")
    ap.add_argument("--duration", type=float, default=60.0)
    args = ap.parse_args()
    rows = []
    for workers in map(int, args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            rows += stack(workers, [int(r) for r in args.rates.split(",")], args.duration, Path(tmp))
    print("| workers | offered ev/s | achieved ev/s | freshness p50 / p99 ms | backlog drained s | kept up "
          "| load average |\n|---|---:|---:|---|---:|---|---|")
    for r in rows:
        f = r["freshness_ms"]
        drained = "never" if r["drain_s"] is None else f"{r['drain_s']:.1f}"
        print(f"| {r['workers']} | {r['offered_events_per_s']:,} | {r['achieved_events_per_s']:,.0f} "
              f"| {f['p50']:.1f} / {f['p99']:.1f} | {drained} | {'yes' if r['kept_up'] else 'no'} "
              f"| {r['load_average']:.2f} |")
    best = {w: max([r["offered_events_per_s"] for r in rows if r["workers"] == w and r["kept_up"]], default=0)
            for w in sorted({r["workers"] for r in rows})}
    result = {"rows": rows, "highest_kept_up": best, "goal_events_per_s": GOAL_EVENTS_PER_S,
              "duration_s": args.duration, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    (ROOT / "bench" / "results" / "sustained.json").write_text(json.dumps(result, indent=1))
    print(f"highest rate kept up: {best} (goal {GOAL_EVENTS_PER_S:,} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
