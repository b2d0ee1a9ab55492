#!/usr/bin/env python3
"""bench/scale: PutEvents accepted and applied per second, and freshness, with 1 or 2 stream
workers and 1 or 2 API processes, on a 3-broker KRaft cluster (replication 3, min ISR 2).

    .venv/bin/python bench/scale.py [--configs 1x1,1x2,2x2] [--duration 10] [--connections 32]
                                    [--shared-nothing]

--shared-nothing runs the distributed mode that shares no disk: every process with a data dir
of its own, the control plane in PostgreSQL and the datasets, archive and artifacts in an
S3-compatible store (both started here). "archived" is when the archive (SQLite files in the
workers' data dir, or the bucket's parts) holds every accepted event.

A config `AxW` runs A API processes and W workers (one consumer group, 4 partitions). wrk
floods PutEvents (batches of 10) for --duration seconds, split over the APIs; "applied" is
the workers' opz_stream_events_applied_total reaching the APIs' opz_api_events_accepted_total
(from the flood's start to caught up). Freshness: idle, 300 sequential single events from
PutEvents' 200 to the state (bench/ingest.py's method); under the flood, the workers'
opz_stream_freshness_seconds histogram (received_at -> stored, interpolated in its buckets).
Everything shares this machine's cores with the 3 brokers, Redis and wrk, so the load
average is reported with each row. Prints a table and writes bench/results/scale.json.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "bench")]
from ingest import UNTHROTTLED, aligned, cpu_seconds, freshness, write_report, wrk  # noqa: E402
from services import KafkaCluster, PostgresServer, RedisServer, S3Server  # noqa: E402
from support import Server, Worker, consumer_lag, free_port  # noqa: E402

from kernel.archive_parts import PartsArchive  # noqa: E402
from kernel.contract import events_topic  # noqa: E402
from kernel.object_store import Bucket  # noqa: E402
from stream.stores import redis_stores  # noqa: E402

PARTITIONS = 4
SETTINGS = {"OPZ_KAFKA_PARTITIONS": str(PARTITIONS), "OPZ_KAFKA_REPLICATION_FACTOR": "3",
            "OPZ_KAFKA_MIN_INSYNC_REPLICAS": "2", **UNTHROTTLED}  # max throughput: no quota
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: list[Samples], name: str) -> float:
    return sum(v for s in samples for (n, _), v in s.items() if n == name)


def buckets(samples: list[Samples], name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts summed over processes, by upper bound."""
    out: dict[float, float] = {}
    for s in samples:
        for (n, labels), v in s.items():
            if n == name + "_bucket":
                le = float(dict(labels)["le"])
                out[le] = out.get(le, 0.0) + v
    return out


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus' histogram_quantile over the observations between two scrapes: linear
    within the bucket the rank falls in (so it is only as fine as the buckets)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-9)
        lower, below = bound, cumulative
    return lower


class Stack:
    """A configs' API processes and workers on a fresh dataset group (its own topic, group
    and key prefix), so one config's backlog never reaches the next."""

    def __init__(self, apis: int, workers: int, kafka: KafkaCluster, redis: RedisServer,
                 tmp: Path, shared: SharedNothing | None = None) -> None:
        self.name = f"scale{uuid.uuid4().hex[:6]}"
        self.redis, self.tmp, self.shared = redis, tmp, shared
        self.env = {"OPZ_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "OPZ_REDIS_URL": redis.url,
                    "OPZ_REDIS_PREFIX": self.name, "OPZ_STREAM_APP_ID": self.name,
                    "OPZ_STREAM_DATASET_GROUPS": self.name, **SETTINGS, **(shared.env if shared else {})}
        tmp.mkdir(parents=True, exist_ok=True)
        # one data dir for all APIs and one for all workers, or, sharing nothing, one each
        own = (lambda kind, i: tmp / f"{kind}{i}") if shared else (lambda kind, i: tmp / kind)
        self.servers = [Server(own("api", i), env=self.env).start() for i in range(apis)]
        control = self.servers[0].client("personalize")
        dsg = control.create_dataset_group(name=self.name)["datasetGroupArn"]
        self.tracking_id = control.create_event_tracker(name=self.name, datasetGroupArn=dsg)["trackingId"]
        self.workers = [Worker(tmp, {**self.env, "OPZ_DATA_DIR": str(own("worker", i)),
                                     "OPZ_METRICS_PORT": str(free_port())}).start()
                        for i in range(workers)]
        self.pids = {"api": [s.proc.pid for s in self.servers],  # type: ignore[union-attr]
                     "worker": [w.proc.pid for w in self.workers],  # type: ignore[union-attr]
                     "brokers": kafka.pids, "redis": [redis.proc.pid],  # type: ignore[union-attr]
                     "s3": [shared.s3.proc.pid] if shared else []}  # type: ignore[union-attr]

    def archived(self) -> int:
        """Events the archive holds now (with repeats, which there must be none of)."""
        if self.shared:
            return PartsArchive(self.shared.bucket).parts(self.name).manifest().rows
        path = self.tmp / "worker" / "archive" / f"{self.name}.db"
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def all_archived(self, accepted: float, timeout_s: float = 600) -> float:
        """perf_counter() when the archive holds every accepted event."""
        deadline = time.perf_counter() + timeout_s
        while self.archived() < accepted:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{self.name}: the archive did not catch up in {timeout_s}s")
            time.sleep(0.1)
        return time.perf_counter()

    def stop(self) -> None:
        for part in [*self.workers, *self.servers]:
            part.stop()

    def counts(self) -> tuple[float, float, list[Samples]]:
        """Events accepted (all APIs), applied (all workers), and the workers' samples."""
        workers = [scrape(w.metrics_url) for w in self.workers]
        accepted = total([scrape(s.url) for s in self.servers], "opz_api_events_accepted_total")
        return accepted, total(workers, "opz_stream_events_applied_total"), workers

    def caught_up(self, timeout_s: float = 600) -> tuple[float, list[Samples]]:
        """perf_counter() when every accepted event is applied, and the workers' samples."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            accepted, applied, workers = self.counts()
            if accepted and applied >= accepted:
                return time.perf_counter(), workers
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: workers did not catch up in {timeout_s}s")

    def warm(self) -> None:
        """Create the topic, let every worker join and own its share of the partitions."""
        topic, deadline = events_topic(self.name), time.monotonic() + 180
        for s in self.servers:
            wrk(s.url, self.tracking_id, batch=10, duration=2, connections=4)
        while True:
            owned = [sorted(consumer_lag(w.metrics_url, topic) or {}) for w in self.workers]
            if all(owned) and sorted(p for o in owned for p in o) == list(range(PARTITIONS)):
                break
            assert time.monotonic() < deadline, f"partitions never shared: {owned}"
            time.sleep(0.5)
        self.caught_up()
        self.all_archived(self.counts()[0])

    def cpu(self) -> dict[str, float]:
        per_pid = cpu_seconds({f"{k}:{pid}": pid for k, pids in self.pids.items() for pid in pids})
        return {k: sum(v for name, v in per_pid.items() if name.startswith(k + ":")) for k in self.pids}


class SharedNothing:
    """PostgreSQL and the S3-compatible store, for the mode where processes share no disk."""

    def __init__(self, tmp: Path) -> None:
        # PostgreSQL in a temporary folder its own user owns (it refuses to run as root)
        self.postgres, self.s3 = PostgresServer(), S3Server(base_dir=tmp / "s3")
        self.postgres.start()
        self.s3.start()
        self.bucket_name = f"opz-{uuid.uuid4().hex[:12]}"
        self.s3.client().create_bucket(Bucket=self.bucket_name)
        self.env = {"OPZ_DATABASE_URL": self.postgres.url, "OPZ_S3_BUCKET": self.bucket_name,
                    "OPZ_S3_ENDPOINT_URL": self.s3.endpoint, "AWS_ACCESS_KEY_ID": self.s3.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.s3.secret_key, "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("AWS_")})  # this process reads
        self.bucket = Bucket(self.bucket_name, "archive/", self.s3.endpoint)

    def stop(self) -> None:
        self.s3.stop()
        self.postgres.stop()


def flood(stack: Stack, duration: int, connections: int) -> dict[str, float]:
    """wrk on every API at once, the connections split between them; summed."""
    results: list[dict[str, float]] = []
    per = max(1, connections // len(stack.servers))

    def one(url: str) -> None:
        results.append(wrk(url, stack.tracking_id, batch=10, duration=duration, connections=per))
    threads = [threading.Thread(target=one, args=(s.url,)) for s in stack.servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"events": sum(r["events"] for r in results),
            "events_per_s": sum(r["events_per_s"] for r in results),
            "non2xx": sum(r["non2xx"] for r in results),
            "latency_p50_ms": statistics.median(r["latency_p50_ms"] for r in results),
            "latency_p99_ms": max(r["latency_p99_ms"] for r in results)}


def run_config(apis: int, workers: int, kafka: KafkaCluster, redis: RedisServer,
               args: argparse.Namespace, tmp: Path, shared: SharedNothing | None) -> dict[str, object]:
    stack = Stack(apis, workers, kafka, redis, tmp, shared)
    try:
        stack.warm()
        load_before = os.getloadavg()[0]
        _, applied0, samples0 = stack.counts()
        archived0 = stack.archived()
        cpu0, t0 = stack.cpu(), time.perf_counter()
        load = flood(stack, args.duration, args.connections)
        t1, samples1 = stack.caught_up()
        t_archived = stack.all_archived(stack.counts()[0])
        cpu1 = stack.cpu()
        applied = total(samples1, "opz_stream_events_applied_total") - applied0
        fresh_before, fresh_after = (buckets(s, "opz_stream_freshness_seconds") for s in (samples0, samples1))
        idle = asyncio.run(freshness(stack.servers[0].url, stack.tracking_id,
                                     redis_stores(redis.url, stack.name), stack.name,
                                     args.freshness_events))
        cpu = {k: cpu1[k] - cpu0[k] for k in cpu0}
        return {
            "apis": apis, "workers": workers, "accepted": load,
            "applied_events": applied, "applied_events_per_s": applied / (t1 - t0),
            "catch_up_s": (t1 - t0) - args.duration,
            "archived_events_per_s": (stack.archived() - archived0) / (t_archived - t0),
            "archive_catch_up_s": (t_archived - t0) - args.duration,
            "freshness_under_flood_ms": {q: 1000 * quantile(float(q), fresh_before, fresh_after)
                                         for q in ("0.5", "0.99")},
            "freshness_idle_ms": {"p50": statistics.median(idle),
                                  "p99": statistics.quantiles(idle, n=100)[98], "n": len(idle)},
            "cpu_s_per_1000_events": {k: v / applied * 1000 for k, v in cpu.items()},
            "cores_busy": sum(cpu.values()) / (t1 - t0),
            "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        }
    finally:
        stack.stop()


def table(results: dict[str, dict]) -> str:  # type: ignore[type-arg]
    rows = [("figure", *results), ("-" * 40, *["-" * 14] * len(results))]

    def row(label: str, fn) -> None:  # type: ignore[no-untyped-def]
        rows.append((label, *[fn(r) for r in results.values()]))

    row("PutEvents, batches of 10: events/s accepted", lambda r: f"{r['accepted']['events_per_s']:,.0f}")
    row("  call latency p50 / p99 (ms)",
        lambda r: f"{r['accepted']['latency_p50_ms']:.1f} / {r['accepted']['latency_p99_ms']:.1f}")
    row("applied to session state: events/s", lambda r: f"{r['applied_events_per_s']:,.0f}")
    row("  catch-up after the flood (s)", lambda r: f"{r['catch_up_s']:.1f}")
    row("archived: events/s", lambda r: f"{r['archived_events_per_s']:,.0f}")
    row("  archive catch-up after the flood (s)", lambda r: f"{r['archive_catch_up_s']:.1f}")
    row("freshness idle p50 / p99 (ms)",
        lambda r: f"{r['freshness_idle_ms']['p50']:.1f} / {r['freshness_idle_ms']['p99']:.1f}")
    row("freshness under the flood p50 / p99 (s)",
        lambda r: " / ".join(f"{r['freshness_under_flood_ms'][q] / 1000:.1f}" for q in ("0.5", "0.99")))
    row("CPU s per 1,000 events: api / worker",
        lambda r: "{api:.3f} / {worker:.3f}".format(**r["cpu_s_per_1000_events"]))
    row("  brokers / redis / s3",
        lambda r: "{brokers:.3f} / {redis:.3f} / {s3:.3f}".format(**r["cpu_s_per_1000_events"]))
    row("cores busy (flood + catch-up)", lambda r: f"{r['cores_busy']:.2f}")
    row("load average (1 min) before / after",
        lambda r: f"{r['load_average_1m']['before']:.1f} / {r['load_average_1m']['after']:.1f}")
    return aligned(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="1x1,1x2,2x2", help="APIsxWORKERS, comma-separated")
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per config")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--freshness-events", type=int, default=300)
    ap.add_argument("--shared-nothing", action="store_true",
                    help="a data dir per process, PostgreSQL and an S3 bucket")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: bench/results/scale.json (scale-shared-nothing.json)")
    args = ap.parse_args()
    mode = "-shared-nothing" if args.shared_nothing else ""
    args.out = args.out or ROOT / "bench" / "results" / f"scale{mode}.json"
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    redis, kafka = RedisServer(base_dir=tmp / "redis"), KafkaCluster(3, base_dir=tmp / "kafka")
    redis.start()
    kafka.start()
    shared = SharedNothing(tmp) if args.shared_nothing else None
    results: dict[str, dict[str, object]] = {}
    try:
        for config in args.configs.split(","):
            apis, workers = (int(n) for n in config.split("x"))
            label = f"{apis} API, {workers} worker{'s' if workers > 1 else ''}"
            results[label] = run_config(apis, workers, kafka, redis, args, tmp / config, shared)
            print(f"{label}: {results[label]['applied_events_per_s']:,.0f} events/s applied", file=sys.stderr)
    finally:
        kafka.stop()
        redis.stop()
        if shared:
            shared.stop()
    print(table(results))
    report = {"machine": f"{os.cpu_count()} cores", "cluster": "3 brokers, replication 3, min ISR 2",
              "storage": "shared nothing: PostgreSQL, S3 bucket" if shared else "shared data dirs",
              "partitions": PARTITIONS, "args": {k: str(v) for k, v in vars(args).items()},
              "results": results}
    write_report(report, args.out, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
