#!/usr/bin/env python3
"""bench/batch: a batch inference job of 1,000,000 users through a 10,000-item HRNN.

    .venv/bin/python bench/batch.py [--users 1000000] [--items 10000] [--baseline-users 20000]

Everything runs on this machine. One embedded `personalize serve`; a synthetic HRNN artifact
(training/synthetic.py: hidden_dimension 128, clustered item embeddings, every user known with
a history of 2..12 events, so the job reads each user's state as of training) registered as a
solution version, and an input file of one `{"userId"}` line per user. The job is created
through boto3 (CreateBatchInferenceJob, numResults 25) and timed from its first progress to
ACTIVE; the server's CPU seconds and peak resident memory are read from /proc.

Baseline, in this process, single-threaded: the same model answering users one at a time the
way GetRecommendations does (serving.recommend.recommend: state, exact scores, top 25), on
`--baseline-users` of them. Goal (batch issue): >= 5,000 users/s on this 2-core machine, in
bounded memory. Prints a table and writes bench/results/batch.json, with the load average.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "scripts"), str(ROOT / "tests")]
from ingest import aligned, cpu_seconds, write_report  # noqa: E402
from serve import ROLE, client, load_average, register  # noqa: E402
from support import Server  # noqa: E402

from serving.exclusions import Exclusions  # noqa: E402
from serving.models import load  # noqa: E402
from serving.recommend import NONE_EXCLUDED, USER_PERSONALIZATION, User, recommend  # noqa: E402
from training.synthetic import write_artifact  # noqa: E402

CACHE = ROOT / ".cache" / "bench-batch"
K = 25
GOAL_USERS_PER_S = 5_000


def artifact(n_items: int, n_users: int) -> Path:
    """Written once and kept under .cache/bench-batch (1M users: ~1 GB of states)."""
    directory = CACHE / f"synthetic-{n_items}-u{n_users}-h128"
    if not (directory / "manifest.json").exists():
        print(f"writing a synthetic artifact of {n_items:,} items and {n_users:,} users ...", file=sys.stderr)
        write_artifact(directory, n_items, n_users=n_users, history_median=5, history_longest=12)
    return directory


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def progress(server: Server, arn: str) -> dict[str, Any]:
    """The job as stored, progress included (boto3 keeps only Personalize's members)."""
    return httpx.post(server.url, json={"batchInferenceJobArn": arn}, timeout=30, headers={
        "X-Amz-Target": "AmazonPersonalize.DescribeBatchInferenceJob",
        "Content-Type": "application/x-amz-json-1.1"}).json()["batchInferenceJob"]


def run_job(server: Server, version: str, source: Path, out: Path) -> dict[str, Any]:
    control = client(server)
    arn = control.create_batch_inference_job(
        jobName="bench", solutionVersionArn=version, roleArn=ROLE, numResults=K,
        jobInput={"s3DataSource": {"path": str(source)}},
        jobOutput={"s3DataDestination": {"path": str(out)}})["batchInferenceJobArn"]
    pid = server.proc.pid  # type: ignore[union-attr]
    started = cpu0 = None
    shown = ""
    while (job := progress(server, arn))["status"] not in ("ACTIVE", "CREATE FAILED"):
        if started is None and job["status"] == "CREATE IN_PROGRESS":
            started, cpu0 = time.perf_counter(), cpu_seconds({"api": pid})["api"]
        if (message := job.get("progress", {}).get("message", "")) != shown:
            print(f"\r  {message}", end="", file=sys.stderr)
            shown = message
        time.sleep(0.2)
    assert started is not None and cpu0 is not None
    seconds, cpu = time.perf_counter() - started, cpu_seconds({"api": pid})["api"] - cpu0
    print(file=sys.stderr)
    if job["status"] != "ACTIVE":
        raise RuntimeError(job.get("failureReason"))
    lines = job["progress"]["linesDone"]
    return {"lines": lines, "failed": job["progress"]["linesFailed"], "seconds": seconds,
            "users_per_s": lines / seconds, "cpu_s": cpu, "cpu_s_per_1k_users": 1000 * cpu / lines,
            "peak_rss_mb": peak_rss_mb(pid), "output_mb": (out / f"{source.name}.out").stat().st_size / 2**20}


def baseline(directory: Path, users: int) -> dict[str, Any]:
    """The one-user way on the same artifact: GetRecommendations' steps for each user in turn."""
    model = load("bench", directory)
    t0 = time.perf_counter()
    for u in range(users):
        user_id = f"u{u}"
        recommend(model, USER_PERSONALIZATION, User(user_id, model.history(user_id, ())), None,
                  Exclusions.of(model.n_items, NONE_EXCLUDED, None), K)
    seconds = time.perf_counter() - t0
    return {"users": users, "seconds": seconds, "users_per_s": users / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--baseline-users", type=int, default=20_000)
    args = parser.parse_args()
    directory = artifact(args.items, args.users)
    load0 = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=CACHE))
    source = tmp / "users.json"
    with open(source, "w") as f:
        f.writelines(f'{{"userId": "u{u}"}}\n' for u in range(args.users))
    server = Server(tmp / "data").start()
    try:
        control = client(server)
        group = control.create_dataset_group(name="batch")["datasetGroupArn"]
        version = register(server.data_dir, control, group, "batch", directory)
        job = run_job(server, version, source, tmp / "out")
    finally:
        server.stop()
    base = baseline(directory, args.baseline_users)
    report = {"items": args.items, "users": args.users, "k": K, "job": job, "baseline_one_at_a_time": base,
              "speedup": job["users_per_s"] / base["users_per_s"], "goal_users_per_s": GOAL_USERS_PER_S,
              "goal_met": job["users_per_s"] >= GOAL_USERS_PER_S,
              "load_average_before": load0, "load_average_after": load_average()}
    print(aligned([
        ["path", "users", "s", "users/s", "CPU s / 1k users", "peak RSS MB"],
        ["batch inference job", f"{job['lines']:,}", f"{job['seconds']:.1f}", f"{job['users_per_s']:,.0f}",
         f"{job['cpu_s_per_1k_users']:.3f}", f"{job['peak_rss_mb']:,.0f}"],
        ["one at a time (baseline)", f"{base['users']:,}", f"{base['seconds']:.1f}",
         f"{base['users_per_s']:,.0f}", "", ""]]))
    print(f"goal >= {GOAL_USERS_PER_S:,} users/s: {'met' if report['goal_met'] else 'NOT met'}; "
          f"load average {load0} -> {report['load_average_after']}")
    write_report(report, ROOT / "bench" / "results" / "batch.json", tmp)


if __name__ == "__main__":
    main()
