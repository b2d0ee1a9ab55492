#!/usr/bin/env python3
"""bench/storage: what the bucket costs. The datasets, the events archive and model artifacts
in an S3 bucket (OPZ_S3_BUCKET) against the same in the data dir, on the same machine.

    .venv/bin/python bench/storage.py [--rounds 3]

The bucket is Versity's S3 gateway (scripts/services.py `S3Server`), started here on loopback
over a folder of the same disk as the data dir, so the difference is the S3 API's round trips
(HTTP, SigV4, the gateway's own files), not a network or another disk. Figures, each for the
data dir (`Folder`) and the bucket (`Bucket`, the artifact store's S3 mode):
- import: `training.importer.import_csv` of ml-latest-small's interactions.csv (100,836 rows)
  into a fresh `DatasetStore`: seconds and rows/s.
- puts: `DatasetStore.put` of 2,000 PutItems records in batches of 100, as the dataset writer
  sends them: each batch a part and a manifest swap, and one merge of the put parts on the way.
- training data read: what `Trainer.table` reads, `DatasetStore.read` of the import, and
  `PartsArchive.read` of 100,000 events (the same CSV's rows) that `PartsArchive.store` kept as
  20 parts (the store is timed too: it is the distributed archive writer's commit).
- training: `Trainer.train` of an HRNN FULL (2 epochs, hidden 32: the storage's share is what is
  compared, not the model) on what the steps before stored, the import and the archive: the
  whole job, reading both, measuring, writing and publishing its artifact.
- artifact: `ArtifactStore.publish` of a synthetic HRNN artifact (training.synthetic, the
  trainer's file layout, ~50 MB), and `ArtifactStore.local` of it from an empty cache (in the
  bucket, another host's first load; in the data dir the files are already there).
Each round measures every figure for both, back to back, the order swapped every round, so
load from outside the bench falls on both alike; the median round is reported, with the
1-minute load average when each figure was taken. Prints a table and writes
bench/results/storage.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "bench")]
from ingest import aligned, write_report  # noqa: E402
from services import S3Server  # noqa: E402
from support import DATASETS  # noqa: E402

from kernel.archive_parts import PartsArchive  # noqa: E402
from kernel.artifact_store import ArtifactStore  # noqa: E402
from kernel.contract import DatasetRecord, Event, events_topic  # noqa: E402
from kernel.dataset_schema import parse_schema  # noqa: E402
from kernel.datasets import DatasetStore  # noqa: E402
from kernel.object_store import Bucket, Folder, ObjectStore  # noqa: E402
from kernel.recipes import RECIPE_ARN_PREFIX  # noqa: E402
from training.importer import import_csv  # noqa: E402
from training.synthetic import write_artifact  # noqa: E402
from training.trainer import Trainer  # noqa: E402

SOURCE = DATASETS / "ml-latest-small"
BUCKET = "opz-bench-storage"
GROUP = "bench"
BACKENDS = ("data dir", "bucket")
INTERACTIONS = parse_schema(json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
    {"name": "EVENT_VALUE", "type": ["null", "float"]}], "version": "1.0"}))
PUT_RECORDS, PUT_BATCH = 2_000, 100  # 20 batches: past MAX_PUT_PARTS (16), so one merge
ARCHIVE_EVENTS, ARCHIVE_PARTS = 100_000, 20
# ~50 MB: the embeddings table (items x 128 float32) is written three times (numpy table, ONNX
# step graph, UPDATE weights), the rest is a few MB of ids, histories and user states
ARTIFACT_ITEMS, ARTIFACT_USERS = 30_000, 2_000
TRAINED = "arn:aws:personalize:us-east-1:000000000000:solution/bench/trained"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    higher_is_better: bool = False  # a rate; else seconds

    def cost(self, data_dir: float, bucket: float) -> float:
        """How many times what the data dir takes the bucket takes (> 1: the bucket is slower)."""
        over, under = (data_dir, bucket) if self.higher_is_better else (bucket, data_dir)
        return over / under if under else float("inf")

    def shown(self, value: float) -> str:
        """Rates in whole units; seconds to 3 significant digits (a data dir's first load of an
        artifact is a file check, microseconds)."""
        return f"{value:,.0f}" if self.higher_is_better else f"{value:.3g}"


FIGURES = (
    Figure("import_s", "import interactions.csv, 100,836 rows (s)"),
    Figure("import_rows_per_s", "  import rows/s", higher_is_better=True),
    Figure("dataset_read_s", "read the INTERACTIONS dataset (s)"),
    Figure("put_records_per_s", "puts: 2,000 records, batches of 100 (rec/s)", higher_is_better=True),
    Figure("archive_store_s", "archive store: 100,000 events, 20 parts (s)"),
    Figure("archive_read_s", "archive read: PartsArchive.read (s)"),
    Figure("training_s", "training job: HRNN FULL, 2 epochs, 200,836 rows (s)"),
    Figure("artifact_publish_s", "artifact publish (s)"),
    Figure("artifact_load_s", "artifact first load, empty cache (s)"),
)


@dataclass(frozen=True)
class Inputs:
    """What every round stores, built once and outside the clock."""
    csv: Path
    rows: int
    records: list[DatasetRecord]
    events: list[Event]
    artifact: Path  # a finished artifact directory, copied into each publish's staging folder
    artifact_bytes: int


@dataclass(frozen=True)
class Run:
    """One backend's stores for one round: fresh folders or fresh prefixes, nothing shared."""
    datasets: DatasetStore
    archive: PartsArchive
    trainer: ArtifactStore  # publishes
    reader: ArtifactStore  # loads: in the bucket, another host's empty data dir
    location: str
    home: Path  # the trainer's data dir (in the bucket, only its staging and cache)


def runs_of(backend: str, tag: str, tmp: Path, server: S3Server) -> Run:
    """The round's stores; S3 clients are built here, so no figure pays for botocore's setup."""
    home = tmp / backend.replace(" ", "-") / tag
    if backend == "data dir":
        datasets: ObjectStore = Folder(home / "datasets")
        archive: ObjectStore = Folder(home / "archive")
        trainer = reader = ArtifactStore(home)  # one data dir: the trainer's folder is the reader's
    else:
        buckets = [Bucket(BUCKET, f"{tag}/{name}/", server.endpoint) for name in ("datasets", "archive")]
        trainer = ArtifactStore(home / "trainer", BUCKET, server.endpoint)
        reader = ArtifactStore(home / "reader", BUCKET, server.endpoint)
        clients = [store.client for store in (*buckets, trainer, reader)]
        assert all(clients)
        datasets, archive = buckets
    return Run(DatasetStore(datasets), PartsArchive(archive), trainer, reader, f"artifacts/bench/{tag}",
               home / "trainer")


# ---- the figures: each step runs on one backend's stores and returns what it measured ----

def step_import(run: Run, inputs: Inputs) -> dict[str, float]:
    t0 = time.perf_counter()
    imported = import_csv(run.datasets, [inputs.csv], job_id="bench-import", location=str(inputs.csv),
                          dataset_group=GROUP, dataset_type="INTERACTIONS", schema=INTERACTIONS,
                          replace=True, progress=lambda **_: None)
    seconds = time.perf_counter() - t0
    assert imported.rows == inputs.rows, imported
    return {"import_s": seconds, "import_rows_per_s": imported.rows / seconds}


def step_read(run: Run, inputs: Inputs) -> dict[str, float]:
    t0 = time.perf_counter()
    table = run.datasets.read(GROUP, "INTERACTIONS")
    seconds = time.perf_counter() - t0
    assert table.num_rows == inputs.rows, table.num_rows
    return {"dataset_read_s": seconds}


def step_puts(run: Run, inputs: Inputs) -> dict[str, float]:
    t0 = time.perf_counter()
    for start in range(0, len(inputs.records), PUT_BATCH):
        run.datasets.put(inputs.records[start:start + PUT_BATCH])
    seconds = time.perf_counter() - t0
    manifest = run.datasets.manifest(GROUP, "ITEMS")
    assert manifest.rows == len(inputs.records) and len(manifest.parts) < PUT_RECORDS // PUT_BATCH, manifest
    return {"put_records_per_s": len(inputs.records) / seconds}


def step_archive_store(run: Run, inputs: Inputs) -> dict[str, float]:
    """One part per partition, as the archive writer commits a partition's window."""
    per_part = len(inputs.events) // ARCHIVE_PARTS
    topic = events_topic(GROUP)
    t0 = time.perf_counter()
    for partition in range(ARCHIVE_PARTS):
        chunk = inputs.events[partition * per_part:(partition + 1) * per_part]
        run.archive.store(GROUP, topic, partition, list(enumerate(chunk)), len(chunk))
    seconds = time.perf_counter() - t0
    assert len(run.archive.parts(GROUP).manifest().parts) == ARCHIVE_PARTS
    return {"archive_store_s": seconds}


def step_archive_read(run: Run, inputs: Inputs) -> dict[str, float]:
    t0 = time.perf_counter()
    events = run.archive.read(GROUP)
    seconds = time.perf_counter() - t0
    assert len(events) == len(inputs.events), len(events)
    return {"archive_read_s": seconds}


def step_train(run: Run, inputs: Inputs) -> dict[str, float]:
    """A trainer process's job on these stores: reads, fit, metrics, the artifact written and
    published (in the bucket, uploaded)."""
    trainer = Trainer(run.home, 100, run.trainer, run.datasets, run.archive)
    t0 = time.perf_counter()
    out = trainer.train(version_arn=TRAINED, dataset_group=GROUP, recipe_arn=RECIPE_ARN_PREFIX + "aws-hrnn",
                        hyperparameters={"epochs": "2", "hidden_dimension": "32"}, event_type=None,
                        event_value_threshold=None, parent=None, progress=lambda **_: None)
    seconds = time.perf_counter() - t0
    assert out["interactions"] > inputs.rows, out["interactions"]  # the import and the archive
    run.trainer.delete(out["artifact"])
    return {"training_s": seconds}


def step_publish(run: Run, inputs: Inputs) -> dict[str, float]:
    """The trainer's last step; writing the artifact into staging is training, not storage."""
    staged = run.trainer.staging(run.location)
    shutil.copytree(inputs.artifact, staged, dirs_exist_ok=True)
    t0 = time.perf_counter()
    run.trainer.publish(staged, run.location)
    return {"artifact_publish_s": time.perf_counter() - t0}


def step_load(run: Run, inputs: Inputs) -> dict[str, float]:
    t0 = time.perf_counter()
    directory = run.reader.local(run.location)
    seconds = time.perf_counter() - t0
    assert sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) >= inputs.artifact_bytes
    return {"artifact_load_s": seconds}


STEPS: tuple[Callable[[Run, Inputs], dict[str, float]], ...] = (
    step_import, step_read, step_puts, step_archive_store, step_archive_read, step_train, step_publish,
    step_load)


def one_round(number: int, tmp: Path, server: S3Server, inputs: Inputs) -> dict[str, Any]:
    """Every step on both backends back to back (the order swapped each round), so a burst of
    load from elsewhere lands on both figures of a step rather than on one backend."""
    order = BACKENDS if number % 2 == 0 else BACKENDS[::-1]
    runs = {b: runs_of(b, f"round{number}", tmp, server) for b in order}
    figures: dict[str, dict[str, dict[str, float]]] = {b: {} for b in order}
    for step in STEPS:
        for backend in order:
            load = os.getloadavg()[0]
            for key, value in step(runs[backend], inputs).items():
                figures[backend][key] = {"value": value, "loadavg_1m": round(load, 2)}
    for run in runs.values():  # ~50 MB a copy: keep the disk as it was
        run.trainer.delete(run.location)
        run.reader.delete(run.location)
    shutil.rmtree(tmp / "data-dir" / f"round{number}", ignore_errors=True)
    return {"round": number, "order": list(order), **figures}


# ---- inputs ----

def prepare(tmp: Path) -> Inputs:
    csv = SOURCE / "interactions.csv"
    rows = pcsv.read_csv(csv, convert_options=pcsv.ConvertOptions(column_types={
        "USER_ID": pa.string(), "ITEM_ID": pa.string(), "EVENT_TYPE": pa.string()}))
    artifact = write_artifact(tmp / "artifact", ARTIFACT_ITEMS, n_users=ARTIFACT_USERS, hidden=128)
    size = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
    return Inputs(csv, rows.num_rows, records(SOURCE / "items.csv"), events(rows), artifact, size)


def records(items_csv: Path) -> list[DatasetRecord]:
    """PutItems records of ml-latest-small's first items, with their real titles and genres."""
    table = pcsv.read_csv(items_csv, convert_options=pcsv.ConvertOptions(column_types={
        "ITEM_ID": pa.string(), "TITLE": pa.string(), "GENRES": pa.string(), "YEAR": pa.int64()}))
    now = time.time()
    return [DatasetRecord(record_id=f"r{i}", dataset_group=GROUP, dataset_type="ITEMS", id=row["ITEM_ID"],
                          fields={k: v for k, v in row.items() if k != "ITEM_ID"}, received_at=now + i * 1e-3)
            for i, row in enumerate(table.slice(0, PUT_RECORDS).to_pylist())]


def events(rows: pa.Table) -> list[Event]:
    """PutEvents records of the CSV's first rows: one session per user, sent when rated."""
    return [Event(event_id=f"e{i}", dataset_group=GROUP, tracking_id="bench-tracker", user_id=r["USER_ID"],
                  session_id=f"s{r['USER_ID']}", event_type=r["EVENT_TYPE"], event_value=r["EVENT_VALUE"],
                  item_id=r["ITEM_ID"], sent_at=float(r["TIMESTAMP"]), received_at=float(r["TIMESTAMP"]))
            for i, r in enumerate(rows.slice(0, ARCHIVE_EVENTS).to_pylist())]


def use_credentials(server: S3Server) -> None:
    """The store's root key through the standard AWS chain, as a deployment's environment has
    it (the stores build their clients with `kernel.object_store.s3_client`)."""
    os.environ.update({"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                       "AWS_DEFAULT_REGION": "us-east-1"})


# ---- report ----

def medians(rounds: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Each figure's median over the rounds, and the median load average it was taken under."""
    return {b: {f.key: {"value": statistics.median(r[b][f.key]["value"] for r in rounds),
                        "loadavg_1m": statistics.median(r[b][f.key]["loadavg_1m"] for r in rounds)}
                for f in FIGURES} for b in BACKENDS}


def table(median: dict[str, dict[str, dict[str, float]]]) -> str:
    rows: list[list[object]] = [["figure", *BACKENDS, "bucket cost", "loadavg 1m (dir / bucket)"]]
    for f in FIGURES:
        d, b = (median[backend][f.key] for backend in BACKENDS)
        cost = f.cost(d["value"], b["value"])
        rows.append([f.label, f.shown(d["value"]), f.shown(b["value"]), f"{cost:,.2f}x",
                     f"{d['loadavg_1m']:.2f} / {b['loadavg_1m']:.2f}"])
    return aligned(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each measuring both backends")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "storage.json")
    args = ap.parse_args()
    if not (SOURCE / "interactions.csv").is_file():
        sys.exit(f"{SOURCE} is missing: the bench reads ml-latest-small from ../shared/datasets")
    tmp = Path(tempfile.mkdtemp(prefix="opz-bench-storage-"))
    server = S3Server(base_dir=tmp / "s3")
    server.start()
    try:
        use_credentials(server)
        server.client().create_bucket(Bucket=BUCKET)
        inputs = prepare(tmp)
        rounds = [one_round(n, tmp, server, inputs) for n in range(args.rounds)]
    finally:
        server.stop()
    median = medians(rounds)
    files = sum(1 for p in inputs.artifact.rglob("*") if p.is_file())
    print(f"artifact: {inputs.artifact_bytes / 2**20:.1f} MiB in {files} files; "
          f"median of {args.rounds} round(s)")
    print(table(median))
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version()},
              "args": {k: str(v) for k, v in vars(args).items()},
              "inputs": {"interactions_rows": inputs.rows, "put_records": len(inputs.records),
                         "put_batch": PUT_BATCH, "archive_events": len(inputs.events),
                         "archive_parts": ARCHIVE_PARTS, "artifact_bytes": inputs.artifact_bytes,
                         "artifact_files": files},
              "bucket": "versitygw (scripts/services.py S3Server) on loopback, same disk as the data dir",
              "rounds": rounds, "median": median,
              "bucket_cost": {f.key: round(f.cost(median["data dir"][f.key]["value"],
                                                  median["bucket"][f.key]["value"]), 3) for f in FIGURES}}
    write_report(report, args.out, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
