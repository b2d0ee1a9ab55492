"""A downstream analytics consumer sees every accepted event, each a valid v1 record."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
from support import ROOT, Server, send_events

SCHEMA = json.loads((ROOT / "kernel" / "schemas" / "event.v1.json").read_text())


def test_stream_tail_prints_every_event_once_as_a_valid_record(
        mode_env: dict[str, str], tmp_path: Path, unique: str) -> None:
    server = Server(tmp_path / "data", env=mode_env).start()
    try:
        control = server.client("personalize")
        dsg = control.create_dataset_group(name=unique)["datasetGroupArn"]
        tracking_id = control.create_event_tracker(name=unique, datasetGroupArn=dsg)["trackingId"]
        accepted = asyncio.run(send_events(server.url, tracking_id, users=20, per_user=50))
    finally:
        server.stop()
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "stream", "tail", "--dataset-group", unique,
         "--group", f"{unique}-analytics", "--max-events", str(len(accepted)),
         "--idle-timeout", "60", "--data-dir", str(server.data_dir)],
        capture_output=True, text=True, timeout=120, env={**server.env})
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    for r in records:
        jsonschema.validate(r, SCHEMA)
    assert sorted(r["event_id"] for r in records) == sorted(accepted)
    assert {r["dataset_group"] for r in records} == {unique}


def test_tailing_a_dataset_group_that_does_not_exist_says_so_and_fails(
        mode_env: dict[str, str], tmp_path: Path, unique: str) -> None:
    server = Server(tmp_path / "data", env=mode_env).start()
    try:
        server.client("personalize").create_dataset_group(name=unique)
    finally:
        server.stop()
    for command in (["tail", "--idle-timeout", "1"], ["dead-letters"]):
        out = subprocess.run(
            [sys.executable, "-m", "serving.cli", "stream", *command, "--dataset-group", f"{unique}x",
             "--data-dir", str(server.data_dir)], capture_output=True, text=True, timeout=120,
            env={**server.env})
        assert out.returncode == 1 and out.stdout == "", out.stderr[-3000:]
        assert out.stderr.count("\n") == 1 and f"no dataset group named '{unique}x'" in out.stderr
