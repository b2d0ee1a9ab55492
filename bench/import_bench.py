#!/usr/bin/env python3
"""bench/import_bench: bulk CSV import (CreateDatasetImportJob) of 1,000,000 interactions.

    .venv/bin/python bench/import_bench.py [--rows 1000000] [--repeats 3]

Data: the 100,000 real MovieLens ratings of ../shared/datasets/ml-100k/interactions.csv,
repeated until --rows with the user ids suffixed per copy ("259" -> "259-3") so that the
users of each copy differ; written to a temp dir that is removed at the end.
Measured end to end through boto3 against a real `personalize serve` started here: seconds
from CreateDatasetImportJob to DescribeDatasetImportJob reading ACTIVE (polled every 50 ms),
importMode FULL, --repeats times (a new job each time); min and median, rows/s, and the
server's peak RSS (VmHWM) before and after the imports.
Goal (issue): a bulk import of 1,000,000 interactions finishes in <= 15 s on this machine.
Baseline, same run, in-process: the straightforward way, the stdlib `csv` module reading the
same file, each row converted and checked in Python (int(TIMESTAMP), float(EVENT_VALUE),
non-empty ids), the collected columns written to one Parquet file with pyarrow.
Prints a table and writes bench/results/import.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests")]
from support import DATASETS, Server  # noqa: E402

SOURCE = DATASETS / "ml-100k" / "interactions.csv"
GOAL_S = 15.0  # for 1,000,000 rows
ROLE = "arn:aws:iam::000000000000:role/personalize"
POLL_S = 0.05
INTERACTIONS = json.dumps({
    "type": "record", "name": "Interactions", "namespace": "com.amazonaws.personalize.schema",
    "version": "1.0", "fields": [
        {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
        {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
        {"name": "EVENT_VALUE", "type": ["null", "float"]}]})
ARROW_SCHEMA = pa.schema([("USER_ID", pa.string()), ("ITEM_ID", pa.string()),
                          ("TIMESTAMP", pa.int64()), ("EVENT_TYPE", pa.string()),
                          ("EVENT_VALUE", pa.float32())])


def build_csv(path: Path, rows: int) -> int:
    """`rows` interactions: copies of the real ratings, user ids suffixed with the copy number."""
    lines = SOURCE.read_text().splitlines()
    header, body = lines[0], [ln for ln in lines[1:] if ln]
    assert header.startswith("USER_ID,"), header
    written = 0
    with open(path, "w") as out:
        out.write(header + "\n")
        copy = 0
        while written < rows:
            take = body[: rows - written]
            out.write("".join(f"{u}-{copy},{rest}\n" for u, rest in
                              (ln.split(",", 1) for ln in take)))
            written += len(take)
            copy += 1
    return written


def vm_hwm_mib(pid: int) -> float | None:
    """Peak resident set size of a process (VmHWM), MiB; None if /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def server_imports(csv_path: Path, tmp: Path, repeats: int, expected_rows: int) -> dict[str, object]:
    server = Server(tmp / "api").start()
    manifest = server.data_dir / "datasets" / "bench" / "INTERACTIONS" / "manifest.json"
    try:
        control = server.client("personalize")
        dsg = control.create_dataset_group(name="bench")["datasetGroupArn"]
        schema_arn = control.create_schema(name="bench-interactions", schema=INTERACTIONS)["schemaArn"]
        dataset = control.create_dataset(name="bench-interactions", schemaArn=schema_arn,
                                         datasetGroupArn=dsg, datasetType="INTERACTIONS")["datasetArn"]
        pid = server.proc.pid  # type: ignore[union-attr]
        rss_before = vm_hwm_mib(pid)
        runs = []
        for i in range(repeats):
            t0 = time.perf_counter()
            arn = control.create_dataset_import_job(
                jobName=f"bench-full-{i}", datasetArn=dataset, roleArn=ROLE, importMode="FULL",
                dataSource={"dataLocation": str(csv_path)})["datasetImportJobArn"]
            while True:
                job = control.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"]
                if job["status"] in ("ACTIVE", "CREATE FAILED"):
                    break
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError(f"import still {job['status']} after 600 s")
                time.sleep(POLL_S)
            seconds = time.perf_counter() - t0
            if job["status"] != "ACTIVE":
                raise RuntimeError(f"import failed: {job.get('failureReason')}")
            server_s = (job["lastUpdatedDateTime"] - job["creationDateTime"]).total_seconds()
            # boto3 drops the job's non-AWS `progress` member: count the rows from the manifest
            imported = json.loads(manifest.read_text())["rows"]
            if imported != expected_rows:
                raise RuntimeError(f"import {arn} committed {imported} rows, expected {expected_rows}")
            runs.append({"seconds": seconds, "server_side_s": server_s, "rows_committed": imported})
            print(f"  import {i + 1}/{repeats}: {seconds:.2f} s (server side {server_s:.2f} s)",
                  file=sys.stderr)
        return {"runs": runs, "server_vm_hwm_mib_before": rss_before,
                "server_vm_hwm_mib_after": vm_hwm_mib(pid)}
    finally:
        server.stop()


def baseline(csv_path: Path, out: Path) -> dict[str, float | int]:
    """The straightforward way: stdlib csv, a Python loop per row, pyarrow for the Parquet."""
    t0 = time.perf_counter()
    cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}  # type: ignore[type-arg]
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        idx = [header.index(name) for name in ARROW_SCHEMA.names]
        users, items, stamps, types, values = (cols[n] for n in ARROW_SCHEMA.names)
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise ValueError(f"line {line}: expected {len(header)} fields, found {len(row)}")
            user, item, ts, etype, value = (row[i] for i in idx)
            if not user or not item:
                raise ValueError(f"line {line}: empty USER_ID or ITEM_ID")
            users.append(user)
            items.append(item)
            stamps.append(int(ts))
            types.append(etype)
            values.append(float(value) if value else None)
    table = pa.Table.from_pydict(cols, schema=ARROW_SCHEMA)
    pq.write_table(table, out, compression="zstd")
    return {"seconds": time.perf_counter() - t0, "rows": table.num_rows}


def table(rows: int, server: dict, base: dict) -> str:  # type: ignore[type-arg]
    secs = [r["seconds"] for r in server["runs"]]
    median, best = statistics.median(secs), min(secs)
    goal = GOAL_S * rows / 1_000_000
    lines = [
        ("rows (ml-100k x copies, users suffixed)", f"{rows:,}"),
        ("goal: FULL import, create -> ACTIVE", f"<= {goal:.1f} s"),
        ("server import median / min (s)", f"{median:.2f} / {best:.2f}"),
        ("  server side created -> ACTIVE median (s)",
         f"{statistics.median(r['server_side_s'] for r in server['runs']):.2f}"),
        ("  rows/s (median)", f"{rows / median:,.0f}"),
        ("  server peak RSS before / after (MiB)",
         f"{server['server_vm_hwm_mib_before'] or 0:.0f} / {server['server_vm_hwm_mib_after'] or 0:.0f}"),
        ("baseline: stdlib csv + Python loop (s)", f"{base['seconds']:.2f}"),
        ("  rows/s", f"{rows / base['seconds']:,.0f}"),
        ("speed-up vs baseline (median)", f"{base['seconds'] / median:.1f}x"),
        ("goal met", "PASS" if median <= goal else "FAIL"),
    ]
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "import.json")
    args = ap.parse_args()
    if not SOURCE.is_file():
        sys.exit(f"the shared datasets are missing: expected {SOURCE}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        csv_path = tmp / "interactions.csv"
        rows = build_csv(csv_path, args.rows)
        print(f"built {csv_path} ({rows:,} rows, {csv_path.stat().st_size / 2**20:.0f} MiB)",
              file=sys.stderr)
        server = server_imports(csv_path, tmp, args.repeats, rows)
        base = baseline(csv_path, tmp / "baseline.parquet")
        assert base["rows"] == rows, base
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, server, base))
    secs = [r["seconds"] for r in server["runs"]]
    goal = GOAL_S * rows / 1_000_000
    report = {"machine": f"{os.cpu_count()} cores", "rows": rows,
              "goal": {"full_import_s": goal, "for_rows": rows, "issue": "1,000,000 rows in <= 15 s"},
              "results": {"server": {**server, "median_s": statistics.median(secs), "min_s": min(secs),
                                     "rows_per_s": rows / statistics.median(secs)},
                          "baseline_stdlib_csv": {**base, "rows_per_s": rows / base["seconds"]}},
              "speed_up": base["seconds"] / statistics.median(secs),
              "pass": statistics.median(secs) <= goal,
              "args": {k: str(v) for k, v in vars(args).items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
