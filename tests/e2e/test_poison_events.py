"""Poison events, as a user (or an older or broken producer) sends them: a `sentAt` no calendar
holds, events without `itemId`, records that do not decode. None may stop the pipeline: the
first is refused at the door (and one already in the log is a dead letter of the archive),
the second is kept and left out of training, the third are dead letters of every consumer,
listed by `personalize stream dead-letters`, while every good event goes on through."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.exceptions
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import Server, Worker, free_port
from test_datasets import INTERACTIONS, Dataset, read_csv
from test_training import RECIPE, wait

from kernel.archive import ArchiveFiles
from kernel.archive_parts import PartsArchive
from kernel.contract import Event
from kernel.object_store import Folder
from stream.log import KafkaEventLog, SqliteEventLog
from training.import_client import Control


class Stack:
    """A server, and in Kafka mode a stream worker sharing its data dir, following `group` only."""

    def __init__(self, tmp_path: Path, group: str, mode_env: dict[str, str], **env: str) -> None:
        self.group, self.kafka = group, mode_env.get("OPZ_KAFKA_BOOTSTRAP_SERVERS")
        env |= mode_env
        if self.kafka:
            env |= {"OPZ_REDIS_PREFIX": group, "OPZ_STREAM_APP_ID": f"{group}-stream",
                    "OPZ_STREAM_DATASET_GROUPS": group, "OPZ_METRICS_PORT": str(free_port())}
        self.server = Server(tmp_path / "data", env=env)
        self.worker = Worker(tmp_path, {**env, "OPZ_DATA_DIR": str(self.server.data_dir)}) \
            if self.kafka else None

    def start(self) -> Stack:
        self.server.start()
        if self.worker is not None:
            self.worker.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        if self.worker is not None:
            self.worker.stop()

    def output(self) -> str:
        return self.server.output(None) + (self.worker.output(None) if self.worker else "")

    def logged(self, event: Event) -> None:
        """Put `event` in the log as the API of an earlier version would have accepted it."""
        async def append() -> None:
            log = KafkaEventLog(self.kafka) if self.kafka else \
                SqliteEventLog(self.server.data_dir / "events.db")
            await log.start()
            try:
                await log.append([event])
            finally:
                await log.close()

        asyncio.run(append())

    def logged_raw(self, value: bytes) -> None:
        """Put bytes in the group's events topic that no consumer of this version can decode."""
        topic = f"opz.{self.group}.events"

        async def send() -> None:
            from aiokafka import AIOKafkaProducer
            producer = AIOKafkaProducer(bootstrap_servers=self.kafka)
            await producer.start()
            try:
                await producer.send_and_wait(topic, value, key=b"u0")
            finally:
                await producer.stop()

        async def create_tables() -> None:
            log = SqliteEventLog(self.server.data_dir / "events.db")
            await log.start()
            await log.close()

        if self.kafka:
            asyncio.run(send())
            return
        asyncio.run(create_tables())
        with sqlite3.connect(self.server.data_dir / "events.db") as db:
            db.execute("INSERT INTO events (topic, key, value) VALUES (?, ?, ?)", (topic, "u0", value))

    def metric(self, name: str, **labels: str) -> float:
        """A stream metric (the worker's, in Kafka mode)."""
        url = self.worker.metrics_url if self.worker else self.server.url
        text = httpx.get(url + "/metrics", timeout=5).text
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == name and s.labels == labels)

    def dead_letters(self, env: dict[str, str]) -> list[dict[str, Any]]:
        """`personalize stream dead-letters`, as an operator runs it."""
        import os
        done = subprocess.run([sys.executable, "-m", "serving.cli", "stream", "dead-letters",
                               "--dataset-group", self.group, "--data-dir", str(self.server.data_dir)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def archived(self, count: int, timeout: float = 90.0) -> list[Event]:
        """The archive training reads: the stream worker's parts (Kafka), or the embedded SQLite."""
        root = self.server.data_dir / "archive"
        archive = PartsArchive(Folder(root)) if self.kafka else ArchiveFiles(root)
        deadline = time.monotonic() + timeout
        while len(got := archive.read(self.group)) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} events archived:\n{self.output()}"
            time.sleep(0.2)
        return got


def tracker(server: Server, group: str) -> str:
    """A new dataset group's event tracker: its trackingId."""
    control = server.client("personalize")
    arn = control.create_dataset_group(name=group)["datasetGroupArn"]
    return control.create_event_tracker(name=f"{group}-web", datasetGroupArn=arn)["trackingId"]


def clicks(events: Any, tracking_id: str, user: str, items: list[str | None]) -> None:
    """One PutEvents of a user's events; None: an event without an itemId (a page view)."""
    now = time.time()
    events.put_events(trackingId=tracking_id, userId=user, sessionId=f"s-{user}", eventList=[
        {"eventId": f"{user}-{n}", "eventType": "click", "sentAt": now + n, **({"itemId": i} if i else {})}
        for n, i in enumerate(items)])


@pytest.mark.parametrize("sent_at, problem", [
    (datetime(6000, 1, 1, tzinfo=UTC), "must be Unix epoch seconds, less than 100000000000 (milliseconds?)"),
    (datetime(1960, 1, 1, tzinfo=UTC), "must be Unix epoch seconds, not before 1970"),
])
def test_boto3_put_events_with_a_sent_at_out_of_bounds_is_invalid_input(
        embedded_server: Server, sent_at: datetime, problem: str) -> None:
    events = embedded_server.client("personalize-events")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        events.put_events(trackingId=tracker(embedded_server, "shop"), userId="u", sessionId="s", eventList=[
            {"eventType": "click", "itemId": "i1", "sentAt": time.time()},
            {"eventType": "click", "itemId": "i2", "sentAt": sent_at}])
    assert exc.value.response["Error"]["Code"] == "InvalidInputException"
    assert exc.value.response["Error"]["Message"] == f"eventList[1].sentAt: {problem}"


def test_a_sent_at_of_1e17_is_refused_and_one_already_logged_is_skipped(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    """boto3 cannot even send 1e17 (no datetime holds it); a page or curl can. Refused now; one
    accepted before (already in the log) once stopped the archive consumer at every start."""
    stack = Stack(tmp_path, unique, mode_env)
    stack.logged(Event(event_id="poison", dataset_group=unique, tracking_id="t", user_id="u0",
                       session_id="s-u0", event_type="click", item_id="i0", sent_at=1e17, received_at=0.0))
    stack.start()
    try:
        tracking_id = tracker(stack.server, unique)
        for sent_at in (1e17, 1e20, 1.7e12, -1):
            answer = httpx.post(stack.server.url + "/events", json={
                "trackingId": tracking_id, "userId": "u", "sessionId": "s",
                "eventList": [{"eventType": "click", "itemId": "i", "sentAt": sent_at}]})
            assert answer.status_code == 400, answer.text
            assert answer.json()["__type"] == "InvalidInputException"
            assert answer.json()["message"].startswith("eventList[0].sentAt: must be Unix epoch seconds")
        events = stack.server.client("personalize-events")
        for u in range(3):
            clicks(events, tracking_id, f"u{u}", ["i1", "i2"])
        good = [f"u{u}-{n}" for u in range(3) for n in (0, 1)]
        assert sorted(e.event_id for e in stack.archived(6)) == good
        assert stack.metric("opz_stream_dead_letters_total", consumer="archive") == 1
        assert "archive: dead letter for event poison" in stack.output()
        [letter] = stack.dead_letters(mode_env)
        assert letter["consumer"] == "archive" and letter["event_id"] == "poison"
        assert "1e+17" in letter["error"] and json.loads(letter["record"])["sent_at"] == 1e17
    finally:
        stack.stop()


def test_records_that_do_not_decode_are_dead_letters_and_the_rest_goes_through(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    """Garbage and a record of a contract version this code does not know, in the log ahead of
    good events: each consumer sets them aside, the good events are applied and archived."""
    stack = Stack(tmp_path, unique, mode_env)
    stack.logged_raw(b"\xff not json at all")
    stack.logged_raw(json.dumps({"v": 9, "event_id": "from-the-future"}).encode())
    stack.start()
    try:
        tracking_id = tracker(stack.server, unique)
        events = stack.server.client("personalize-events")
        for u in range(3):
            clicks(events, tracking_id, f"u{u}", ["i1", "i2"])
        good = [f"u{u}-{n}" for u in range(3) for n in (0, 1)]
        assert sorted(e.event_id for e in stack.archived(6)) == good
        deadline = time.monotonic() + 60
        while stack.metric("opz_stream_events_applied_total") < 6:
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.2)
        for consumer in ("sessions", "archive"):
            assert stack.metric("opz_stream_dead_letters_total", consumer=consumer) == 2
        letters = stack.dead_letters(mode_env)
        assert sorted(x["consumer"] for x in letters) == ["archive", "archive", "sessions", "sessions"]
        assert {x["record"] for x in letters} == {"\\xff not json at all",
                                                   json.dumps({"v": 9, "event_id": "from-the-future"})}
        assert any("version 9" in x["error"] for x in letters)
    finally:
        stack.stop()


def test_events_without_an_item_are_kept_and_training_leaves_them_out(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    stack = Stack(tmp_path, unique, mode_env, OPZ_MIN_TRAINING_INTERACTIONS="50").start()
    try:
        tracking_id = tracker(stack.server, unique)
        control, events = stack.server.client("personalize"), stack.server.client("personalize-events")
        for u in range(30):
            clicks(events, tracking_id, f"u{u}", [f"i{(u + k) % 9}" for k in range(3)] + [None])
        assert sum(e.item_id is None for e in stack.archived(120)) == 30

        group = f"arn:aws:personalize:us-east-1:000000000000:dataset-group/{unique}"
        solution = control.create_solution(name=unique, datasetGroupArn=group,
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        version = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
        assert version["status"] == "ACTIVE" and "failureReason" not in version, version
        # what `personalize report` reads; boto3 drops members Personalize's model lacks
        described = Control(stack.server.url)("DescribeSolutionVersion", solutionVersionArn=arn)
        assert described["solutionVersion"]["interactions"] == 90
        assert described["solutionVersion"]["skippedInteractions"] == {"withoutItemId": 30}

        interactions = Dataset(control, unique, "INTERACTIONS", INTERACTIONS)
        out = interactions.export(tmp_path / "out", "put", mode="PUT") / "part-00000.csv"
        rows = read_csv(out)
        assert len(rows) == 120 and sum(r["ITEM_ID"] == "" for r in rows) == 30
    finally:
        stack.stop()
