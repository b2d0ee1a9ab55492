#!/usr/bin/env python3
"""The README's first command (`make demo`): embedded openpersonalize on real data.

Starts `personalize serve` (one process, no Kafka, no Redis), then acts as a shop's
backend would with unchanged boto3 code: imports the bundled MovieLens (ml-latest-small)
catalogue and its older ratings with import jobs, streams the newest ratings through
PutEvents, trains HRNN, deploys a campaign, shows one user's top 10, clicks a few films
of one genre and shows the top 10 change. Each step prints its time; then the server stays
up until Ctrl-C.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx

from training.report import watch

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


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """One numbered step of the story, with its wall time."""
    step.n = getattr(step, "n", 0) + 1  # type: ignore[attr-defined]
    print(f"\n[{step.n}] {title}")  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    yield
    print(f"    ({time.perf_counter() - t0:.1f}s)")


def load_titles() -> dict[str, tuple[str, str, int]]:
    with (BUNDLED / "items.csv").open(newline="") as f:
        return {r["ITEM_ID"]: (r["TITLE"], r["GENRES"], int(r["YEAR"] or 0)) for r in csv.DictReader(f)}


def show(items: list[str], titles: dict[str, tuple[str, str, int]], before: list[str] | None = None) -> None:
    for rank, item in enumerate(items, 1):
        title, genres, _ = titles.get(item, (item, "", 0))
        mark = "  new" if before is not None and item not in before else ""
        print(f"    {rank:2}. {title[:48]:48} {genres[:34]:34}{mark}")


def median_year(items: list[str], titles: dict[str, tuple[str, str, int]]) -> int:
    years = sorted(titles[i][2] for i in items if i in titles and titles[i][2])
    return years[len(years) // 2] if years else 0


def clicks_for(user: str, shown: list[str], titles: dict[str, tuple[str, str, int]], since: int,
               n: int = 3) -> list[str]:
    """The n most-rated films from `since` on that the user never rated and was not shown. On
    MovieLens what people rate together is above all films of the same years, so clicks on newer
    films than the user's are the ones whose effect shows plainly."""
    with DATA.open(newline="") as f:
        rows = list(csv.DictReader(f))
    seen = {r["ITEM_ID"] for r in rows if r["USER_ID"] == user} | set(shown)
    count: dict[str, int] = defaultdict(int)
    for r in rows:
        count[r["ITEM_ID"]] += 1
    pool = [i for i in count if i not in seen and titles.get(i, ("", "", 0))[2] >= since]
    return sorted(pool, key=lambda i: (-count[i], i))[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--data-dir", type=Path, default=ROOT / ".cache" / "demo")
    ap.add_argument("--events", type=int, default=5_000, help="newest interactions to stream")
    ap.add_argument("--epochs", type=int, default=3, help="HRNN training passes (3: about a minute)")
    ap.add_argument("--user", default="1", help="whose recommendations to show")
    ap.add_argument("--since", type=int, default=2010, help="the demo clicks films from this year on")
    ap.add_argument("--no-wait", action="store_true", help="stop the server at the end")
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
        runtime = boto3.client("personalize-runtime", **kw)
        titles = load_titles()
        name = f"movielens-{int(time.time())}"

        with step("import the bundled MovieLens catalogue and its older ratings (import jobs)"):
            dsg = personalize.create_dataset_group(name=name)["datasetGroupArn"]
            files = args.data_dir / "files"  # the server's default file root: jobs read only there
            files.mkdir(parents=True, exist_ok=True)
            history = files / "ml-latest-small-history.csv"
            by_user = split_interactions(args.events, history)
            import_dataset(personalize, dsg, name, "ITEMS", Path(shutil.copy(BUNDLED / "items.csv", files)))
            import_dataset(personalize, dsg, name, "INTERACTIONS", history)

        with step(f"stream the newest {args.events:,} ratings through PutEvents (batches of 10)"):
            tracking_id = personalize.create_event_tracker(
                name=f"web-{int(time.time())}", datasetGroupArn=dsg)["trackingId"]
            t0, sent = time.perf_counter(), 0
            for user, rows in by_user.items():
                for batch in (rows[i:i + 10] for i in range(0, len(rows), 10)):
                    events.put_events(trackingId=tracking_id, userId=user, sessionId=f"demo-{user}",
                                      eventList=[{"eventId": f"ml-{user}-{r['ITEM_ID']}-{r['TIMESTAMP']}",
                                                  "eventType": r["EVENT_TYPE"], "itemId": r["ITEM_ID"],
                                                  "eventValue": float(r["EVENT_VALUE"]),
                                                  "sentAt": int(r["TIMESTAMP"])} for r in batch])
                    sent += len(batch)
            dt = time.perf_counter() - t0
            print(f"    done: {sent:,} events of {len(by_user)} users in {dt:.1f}s "
                  f"({sent / dt:,.0f} events/s, one boto3 client)")

        with step(f"train aws-hrnn (FULL, {args.epochs} epochs) on imports + streamed events"):
            solution = personalize.create_solution(
                name=f"{name}-hrnn", datasetGroupArn=dsg, recipeArn="arn:aws:personalize:::recipe/aws-hrnn",
                solutionConfig={"algorithmHyperParameters": {"epochs": str(args.epochs)}})["solutionArn"]
            version = personalize.create_solution_version(solutionArn=solution)["solutionVersionArn"]
            if watch(url, version) != 0:
                return 1
            metrics = personalize.get_solution_metrics(solutionVersionArn=version)["metrics"]
            print(f"    NDCG@10 {metrics['normalized_discounted_cumulative_gain_at_10']:.4f}, "
                  f"precision@10 {metrics['precision_at_10']:.4f} (held-out newest 10% of 10% of users)")

        with step(f"deploy a campaign; user {args.user}'s top 10 of the films they have not rated"):
            campaign = personalize.create_campaign(name=f"{name}-c",
                                                   solutionVersionArn=version)["campaignArn"]
            unseen = personalize.create_filter(  # as on Personalize: a campaign leaves nothing out itself
                name=f"{name}-unseen", datasetGroupArn=dsg,
                filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")')["filterArn"]
            t0 = time.perf_counter()
            before = [i["itemId"] for i in runtime.get_recommendations(
                campaignArn=campaign, userId=args.user, numResults=10, filterArn=unseen)["itemList"]]
            print(f"    GetRecommendations answered in {(time.perf_counter() - t0) * 1000:.1f} ms")
            show(before, titles)

        clicked = clicks_for(args.user, before, titles, args.since)
        with step(f"user {args.user} clicks {len(clicked)} films from {args.since} on, and asks again"):
            for item in clicked:
                print(f"    click: {titles[item][0]}")
            events.put_events(trackingId=tracking_id, userId=args.user, sessionId=f"demo-{args.user}-now",
                              eventList=[{"eventType": "click", "itemId": item, "sentAt": time.time() + i}
                                         for i, item in enumerate(clicked)])
            t0 = time.perf_counter()
            after = before
            while after == before and time.perf_counter() - t0 < 10:
                after = [i["itemId"] for i in runtime.get_recommendations(
                    campaignArn=campaign, userId=args.user, numResults=10, filterArn=unseen)["itemList"]]
            print(f"    the top 10 changed {(time.perf_counter() - t0) * 1000:.0f} ms after the clicks "
                  f"were accepted ({len(set(after) - set(before))} new):" if after != before
                  else "    the top 10 did not change")
            show(after, titles, before)
            print(f"    median release year of the top 10: {median_year(before, titles)} before the clicks, "
                  f"{median_year(after, titles)} after")

        print("\nNext steps (the server keeps running; Ctrl-C stops it):\n"
              f"  open {url}/docs for the API\n"
              f"  aws --endpoint-url {url} personalize-runtime get-recommendations "
              f"--campaign-arn {campaign} --user-id {args.user}\n"
              f"  aws --endpoint-url {url} personalize-events put-events --tracking-id {tracking_id} "
              f"--user-id {args.user} --session-id s1 "
              "--event-list eventType=click,itemId=1,sentAt=1700000000\n"
              f"  personalize solution-version report {version} --endpoint-url {url}   # HTML report")
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
