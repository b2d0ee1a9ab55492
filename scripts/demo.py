#!/usr/bin/env python3
"""The README's first command (`make demo`): embedded openpersonalize on real data.

Starts `personalize serve` (one process, no Kafka, no Redis), then acts as a shop's
backend would with unchanged boto3 code: creates a dataset group and an event tracker,
and streams the newest MovieLens (ml-latest-small, bundled) interactions through
PutEvents. Then it prints what to try next and keeps the server up until Ctrl-C.
"""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import boto3
import httpx

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training" / "datasets" / "ml-latest-small" / "interactions.csv"


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("server did not become healthy")


def newest_interactions(limit: int) -> dict[str, list[dict[str, str]]]:
    with DATA.open() as f:
        rows = list(csv.DictReader(f))[-limit:]  # the file is chronological
    by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_user[r["USER_ID"]].append(r)
    return by_user


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "demo")
    ap.add_argument("--events", type=int, default=20_000, help="newest interactions to stream")
    ap.add_argument("--no-wait", action="store_true", help="stop the server after loading")
    args = ap.parse_args()

    url = f"http://127.0.0.1:{args.port}"
    print(f"starting embedded `personalize serve` on {url} (data dir {args.data_dir})")
    server = subprocess.Popen([sys.executable, "-m", "serving.cli", "serve", "--data-dir",
                               str(args.data_dir), "--port", str(args.port)])
    try:
        wait_healthy(url, server)
        kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="demo",
                  aws_secret_access_key="demo")
        personalize = boto3.client("personalize", **kw)
        events = boto3.client("personalize-events", **kw)

        dsg = personalize.create_dataset_group(name=f"movielens-{int(time.time())}")["datasetGroupArn"]
        tracking_id = personalize.create_event_tracker(
            name=f"web-{int(time.time())}", datasetGroupArn=dsg)["trackingId"]
        by_user = newest_interactions(args.events)
        print(f"dataset group {dsg}\nstreaming {args.events:,} MovieLens ratings of "
              f"{len(by_user)} users through PutEvents (batches of 10) ...")
        t0, sent = time.perf_counter(), 0
        for user, rows in by_user.items():
            for batch in (rows[i:i + 10] for i in range(0, len(rows), 10)):
                events.put_events(trackingId=tracking_id, userId=user, sessionId=f"demo-{user}",
                                  eventList=[{"eventId": f"ml-{user}-{r['ITEM_ID']}-{r['TIMESTAMP']}",
                                              "eventType": r["EVENT_TYPE"], "itemId": r["ITEM_ID"],
                                              "eventValue": float(r["EVENT_VALUE"]),
                                              "sentAt": int(r["TIMESTAMP"])} for r in batch])
                sent += len(batch)
                if sent // 5000 > (sent - len(batch)) // 5000:
                    print(f"  {sent:,} events accepted")
        dt = time.perf_counter() - t0
        print(f"done: {sent:,} events in {dt:.1f}s ({sent / dt:,.0f} events/s, one boto3 client)\n")
        print("Next steps (the server keeps running; Ctrl-C stops it):\n"
              f"  curl {url}/health\n"
              f"  open {url}/docs for the API\n"
              f"  aws --endpoint-url {url} personalize list-dataset-groups   # any AWS SDK works\n"
              f"  aws --endpoint-url {url} personalize-events put-events --tracking-id {tracking_id} "
              "--user-id 1 --session-id s1 --event-list eventType=click,itemId=1,sentAt=1700000000\n"
              "Training, campaigns and GetRecommendations land with the training and serving issues.")
        if not args.no_wait:
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(15)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
