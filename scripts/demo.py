#!/usr/bin/env python3
"""The README's first command (`make demo`): embedded openpersonalize on real data.

Starts `personalize serve` (one process, no Kafka, no Redis), then acts as a shop's
backend would with unchanged boto3 code: creates a dataset group, schemas and datasets,
imports the bundled MovieLens (ml-latest-small) catalogue and its older ratings with
import jobs, creates an event tracker and streams the newest ratings through PutEvents.
Then it prints what to try next and keeps the server up until Ctrl-C.
"""
from __future__ import annotations

import argparse
import csv
import json
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
BUNDLED = ROOT / "training" / "datasets" / "ml-latest-small"
DATA = BUNDLED / "interactions.csv"
ROLE = "arn:aws:iam::000000000000:role/unused"  # Personalize wants one; we need none
SCHEMAS = {
    "INTERACTIONS": [{"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
                     {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
                     {"name": "EVENT_VALUE", "type": ["null", "float"]}],
    "ITEMS": [{"name": "ITEM_ID", "type": "string"}, {"name": "TITLE", "type": "string"},
              {"name": "GENRES", "type": ["null", "string"], "categorical": True},
              {"name": "YEAR", "type": ["null", "int"]}],
}


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


def split_interactions(limit: int, history: Path) -> dict[str, list[dict[str, str]]]:
    """Write all but the newest `limit` ratings to `history` (for the bulk import) and
    return the newest ones by user (for PutEvents); the file is chronological."""
    with DATA.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    with history.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(rows[:-limit])
    by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows[-limit:]:
        by_user[r["USER_ID"]].append(r)
    return by_user


def import_dataset(personalize, dsg: str, name: str, kind: str, location: Path) -> None:  # type: ignore[no-untyped-def]
    schema = personalize.create_schema(name=f"{name}-{kind.lower()}", schema=json.dumps(
        {"type": "record", "name": kind.capitalize(), "namespace": "com.amazonaws.personalize.schema",
         "fields": SCHEMAS[kind], "version": "1.0"}))["schemaArn"]
    dataset = personalize.create_dataset(name=f"{name}-{kind.lower()}", schemaArn=schema,
                                         datasetGroupArn=dsg, datasetType=kind)["datasetArn"]
    t0 = time.perf_counter()
    job = personalize.create_dataset_import_job(
        jobName=f"{name}-{kind.lower()}", datasetArn=dataset, roleArn=ROLE, importMode="FULL",
        dataSource={"dataLocation": location.as_uri()})["datasetImportJobArn"]
    while (desc := personalize.describe_dataset_import_job(datasetImportJobArn=job)[
            "datasetImportJob"])["status"] not in ("ACTIVE", "CREATE FAILED"):
        time.sleep(0.1)
    if desc["status"] != "ACTIVE":
        sys.exit(f"import of {location} failed: {desc['failureReason']}")
    print(f"  imported {location.name} into the {kind} dataset in {time.perf_counter() - t0:.1f}s")


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

        name = f"movielens-{int(time.time())}"
        dsg = personalize.create_dataset_group(name=name)["datasetGroupArn"]
        print(f"dataset group {dsg}")
        args.data_dir.mkdir(parents=True, exist_ok=True)
        history = args.data_dir / "ml-latest-small-history.csv"
        by_user = split_interactions(args.events, history)
        import_dataset(personalize, dsg, name, "ITEMS", BUNDLED / "items.csv")
        import_dataset(personalize, dsg, name, "INTERACTIONS", history)
        tracking_id = personalize.create_event_tracker(
            name=f"web-{int(time.time())}", datasetGroupArn=dsg)["trackingId"]
        print(f"streaming {args.events:,} MovieLens ratings of "
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
