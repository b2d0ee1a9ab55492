#!/usr/bin/env python3
"""bench/training_beside_serving: GetRecommendations' latency while the same server trains.

    .venv/bin/python bench/training_beside_serving.py [--rate 200] [--duration 20]

One embedded `personalize serve` per variant, everything on this machine: ml-100k imported, an
HRNN (3 epochs) deployed as a campaign; then open-loop GetRecommendations at --rate for
--duration seconds idle, and again while a FULL HRNN training (the recipe's defaults) runs in
the same server. The variants: training in a thread of the API process
(OPZ_TRAINING_PROCESS=false, the baseline) and in a child process at lower priority on all
cores but one (the default). Goal (throughput issue): the p99 during training within 2x of the
idle p99. Prints a table and writes bench/results/training_beside_serving.json, with the load
average (other work may share the cores).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from serve import (  # sets the BLAS threads and the import path first
    INTERACTIONS,
    RECIPE,
    ROOT,
    client,
    drive,
    import_csv,
    load_average,
    wait,
)
from support import DATASETS, Server

GOAL_P99_RATIO = 2.0
VARIANTS = {"thread (baseline)": "false", "child process": "true"}


def deploy(control: Any) -> tuple[str, str, list[str]]:
    """ml-100k's interactions and a 3-epoch HRNN campaign: (group, solution, users)."""
    group = control.create_dataset_group(name="ml100k")["datasetGroupArn"]
    import_csv(control, group, "INTERACTIONS", INTERACTIONS, DATASETS / "ml-100k" / "interactions.csv")
    quick = {"algorithmHyperParameters": {"epochs": "3"}}
    solution = control.create_solution(name="ml100k-hrnn", datasetGroupArn=group, recipeArn=RECIPE,
                                       solutionConfig=quick)["solutionArn"]
    arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
    campaign = control.create_campaign(name="ml100k", solutionVersionArn=arn)["campaignArn"]
    full = control.create_solution(name="ml100k-full", datasetGroupArn=group, recipeArn=RECIPE)["solutionArn"]
    users = sorted({line.split(",", 1)[0] for line in
                    (DATASETS / "ml-100k" / "interactions.csv").read_text().splitlines()[1:]})
    return campaign, full, users


def variant(training_process: str, rate: int, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", env={"OPZ_TRAINING_PROCESS": training_process}).start()
        try:
            control = client(server)
            campaign, full, users = deploy(control)
            bodies = [{"campaignArn": campaign, "userId": u, "numResults": 25} for u in users]
            drive(server.url, bodies, rate=rate, duration=5)  # warm: every process cache filled once
            idle = drive(server.url, bodies, rate=rate, duration=duration) | {"load_average": load_average()}
            t0 = time.perf_counter()
            arn = control.create_solution_version(solutionArn=full)["solutionVersionArn"]
            while control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]["status"] != \
                    "CREATE IN_PROGRESS":
                time.sleep(0.1)
            time.sleep(2)  # past reading the data: the epochs are what runs beside serving
            busy = drive(server.url, bodies, rate=rate, duration=duration) | {"load_average": load_average()}
            def described() -> dict[str, Any]:
                return control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]
            still = described()["status"]
            used = wait(described).get("tunedHPOParams", {}).get("algorithmHyperParameters", {})
            return {"idle": idle, "training": busy, "training_s": time.perf_counter() - t0,
                    "trained_throughout": still == "CREATE IN_PROGRESS", "epochs": used.get("epochs"),
                    "p99_ratio": busy["p99"] / idle["p99"]}
        finally:
            server.stop()


def table(rows: dict[str, dict[str, Any]]) -> str:
    out = ["| training runs in | idle p50 / p99 ms | during training p50 / p99 ms | p99 ratio "
           "| achieved req/s | FULL training s | load average |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        i, b = r["idle"], r["training"]
        out.append(f"| {name} | {i['p50']:.1f} / {i['p99']:.1f} | {b['p50']:.1f} / {b['p99']:.1f} "
                   f"| {r['p99_ratio']:.2f}{'' if r['trained_throughout'] else ' (training ended early)'} "
                   f"| {b['achieved_rps']:.0f} | {r['training_s']:.0f} | {b['load_average'][0]} |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    rows = {}
    for name, setting in VARIANTS.items():
        print(f"{name} ...", file=sys.stderr)
        rows[name] = variant(setting, args.rate, args.duration)
    result = {"rate": args.rate, "duration_s": args.duration, "goal_p99_ratio": GOAL_P99_RATIO,
              "goal_met": rows["child process"]["p99_ratio"] <= GOAL_P99_RATIO, "variants": rows,
              "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = ROOT / "bench" / "results" / "training_beside_serving.json"
    out.write_text(json.dumps(result, indent=1))
    print(table(rows))
    print(f"goal (p99 during training <= {GOAL_P99_RATIO}x idle, child process): "
          f"{'met' if result['goal_met'] else 'MISSED'}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
