"""Deleting data, as a user does it through boto3: DeleteDataset and DeleteDatasetGroup take the
data with them (a dataset group created again with the same name starts empty), and a data
deletion job takes some users out of a dataset group. Both modes."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from support import Server
from test_datasets import INTERACTIONS, ROLE, Dataset, read_csv, schema
from test_datasets import f as field
from test_poison_events import Stack, clicks, tracker
from test_training import RECIPE, wait

from kernel.contract import events_topic
from stream.session import SessionState
from stream.stores import redis_stores, sqlite_stores

USERS = schema(field("USER_ID"), field("AGE", "int"), name="Users")


def group_arn(name: str) -> str:
    return f"arn:aws:personalize:us-east-1:000000000000:dataset-group/{name}"


def states(stack: Stack, users: list[str]) -> list[SessionState | None]:
    """The users' session states, read from the store the server (or worker) writes."""
    async def load() -> list[SessionState | None]:
        store = redis_stores(stack.server.env["OPZ_REDIS_URL"], stack.group) \
            if stack.kafka else sqlite_stores(stack.server.data_dir / "sessions.db")
        await store.start()
        try:
            return (await store.sessions.load([(stack.group, u) for u in users]))[0]
        finally:
            await store.close()
    return asyncio.run(load())


def wait_for(check: Any, what: str, stack: Stack, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}:\n{stack.output()[-5000:]}"
        time.sleep(0.2)


def logged(stack: Stack) -> int:
    """How many records the group's events topic holds now (embedded: rows of the log's table)."""
    topic = events_topic(stack.group)
    if not stack.kafka:
        with sqlite3.connect(stack.server.data_dir / "events.db") as db:
            return db.execute("SELECT count(*) FROM events WHERE topic = ?", (topic,)).fetchone()[0]

    async def count() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        tps = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka)
        await consumer.start()
        try:
            first, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            return sum(end[tp] - first[tp] for tp in tps)
        finally:
            await consumer.stop()
    return asyncio.run(count())


def test_a_dataset_group_created_again_with_its_name_starts_empty(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    stack = Stack(tmp_path, unique, mode_env).start()
    try:
        control, events = stack.server.client("personalize"), stack.server.client("personalize-events")
        tracking_id = tracker(stack.server, unique)
        interactions = Dataset(control, unique, "INTERACTIONS", INTERACTIONS)
        for u in range(3):
            clicks(events, tracking_id, f"old{u}", ["i1", "i2"])
        stack.archived(6)
        wait_for(lambda: all(states(stack, ["old0", "old1", "old2"])), "old users' states", stack)
        before = interactions.export(tmp_path / "out", "before", mode="PUT") / "part-00000.csv"
        assert len(read_csv(before)) == 6

        control.delete_event_tracker(eventTrackerArn=control.list_event_trackers(
            datasetGroupArn=group_arn(unique))["eventTrackers"][0]["eventTrackerArn"])
        control.delete_dataset(datasetArn=interactions.arn)
        assert stack.archived(0) == []  # the INTERACTIONS dataset's PutEvents part went with it
        control.delete_schema(schemaArn=f"arn:aws:personalize:us-east-1:000000000000:schema/{unique}-interactions")
        control.delete_dataset_group(datasetGroupArn=group_arn(unique))
        with pytest.raises(control.exceptions.ResourceNotFoundException):
            control.describe_dataset_group(datasetGroupArn=group_arn(unique))
        assert states(stack, ["old0", "old1", "old2"]) == [None, None, None]
        assert logged(stack) == 0

        tracking_id = tracker(stack.server, unique)  # the same name again
        interactions = Dataset(control, unique, "INTERACTIONS", INTERACTIONS)
        clicks(events, tracking_id, "new0", ["i3"])
        assert [e.event_id for e in stack.archived(1)] == ["new0-0"]
        wait_for(lambda: states(stack, ["new0"])[0] is not None, "the new user's state", stack)
        rows = read_csv(interactions.export(tmp_path / "out", "after", mode="PUT") / "part-00000.csv")
        assert [r["USER_ID"] for r in rows] == ["new0"]
        assert states(stack, ["old0", "old1", "old2"]) == [None, None, None]
        assert logged(stack) == 1
    finally:
        stack.stop()


def test_a_data_deletion_job_takes_users_out_of_datasets_archive_sessions_and_training(
        tmp_path: Path, unique: str, mode_env: dict[str, str]) -> None:
    stack = Stack(tmp_path, unique, mode_env, OPZ_MIN_TRAINING_INTERACTIONS="50").start()
    try:
        control, events = stack.server.client("personalize"), stack.server.client("personalize-events")
        tracking_id = tracker(stack.server, unique)
        interactions = Dataset(control, unique, "INTERACTIONS", INTERACTIONS)
        users = Dataset(control, unique, "USERS", USERS)
        bulk = tmp_path / "interactions.csv"
        bulk.write_text("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n" + "".join(
            f"u{u},i{(u + k) % 7},{1_700_000_000 + k},click\n" for u in range(30) for k in range(3)))
        assert interactions.import_(bulk, "bulk")["status"] == "ACTIVE"
        (tmp_path / "users.csv").write_text("USER_ID,AGE\n" + "".join(f"u{u},{20 + u}\n" for u in range(30)))
        assert users.import_(tmp_path / "users.csv", "users")["status"] == "ACTIVE"
        # u0 also clicks live, first anonymously (s-u0 is the session it signs in on)
        events.put_events(trackingId=tracking_id, sessionId="s-u0", eventList=[
            {"eventId": "anon-0", "eventType": "click", "itemId": "i5", "sentAt": time.time()}])
        for u in ("u0", "u1"):
            clicks(events, tracking_id, u, ["i1", "i2"])
        stack.archived(5)
        wait_for(lambda: all(states(stack, ["u0", "u1"])), "the users' states", stack)

        (tmp_path / "gone.csv").write_text("USER_ID\nu0\nu2\nnever-seen\nu0\n")
        arn = control.create_data_deletion_job(
            jobName=f"{unique}-gone", datasetGroupArn=group_arn(unique), roleArn=ROLE,
            dataSource={"dataLocation": str(tmp_path / "gone.csv")})["dataDeletionJobArn"]
        job = wait_deletion(control, arn)
        assert job["status"] == "COMPLETED" and job["numDeleted"] == 2, job
        assert job["jobName"] == f"{unique}-gone" and job["datasetGroupArn"] == group_arn(unique)
        assert job["dataSource"] == {"dataLocation": str(tmp_path / "gone.csv")} and job["roleArn"] == ROLE
        assert "failureReason" not in job

        gone = {"u0", "u2", "s-u0"}
        exported = read_csv(interactions.export(tmp_path / "out", "all", mode="ALL") / "part-00000.csv")
        assert len(exported) == 90 - 6 + 2 and not gone & {r["USER_ID"] for r in exported}
        people = read_csv(users.export(tmp_path / "out", "users") / "part-00000.csv")
        assert len(people) == 28 and not gone & {r["USER_ID"] for r in people}
        assert [e.user_id for e in stack.archived(2)] == ["u1", "u1"]
        assert [s is not None for s in states(stack, ["u0", "u1"])] == [False, True]

        solution = control.create_solution(name=unique, datasetGroupArn=group_arn(unique),
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        version = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])
        assert version["status"] == "ACTIVE", version
        trained = artifact_users(stack, arn)
        assert len(trained) == 28 and not gone & set(trained)

        listed = control.list_data_deletion_jobs(datasetGroupArn=group_arn(unique))["dataDeletionJobs"]
        assert [(j["jobName"], j["status"]) for j in listed] == [(f"{unique}-gone", "COMPLETED")]
        control.delete_solution(solutionArn=solution)  # its versions' files go with it
        assert not (stack.server.data_dir / "artifacts" / unique).exists()
    finally:
        stack.stop()


def test_a_data_deletion_job_on_a_bad_file_fails_saying_why(embedded_server: Server, tmp_path: Path) -> None:
    control = embedded_server.client("personalize")
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.create_data_deletion_job(jobName="j", datasetGroupArn=group_arn("nowhere"), roleArn=ROLE,
                                         dataSource={"dataLocation": str(tmp_path / "gone.csv")})
    control.create_dataset_group(name="shop")
    (tmp_path / "gone.csv").write_text("USER,ID\nu1,2\n")
    arn = control.create_data_deletion_job(jobName="j", datasetGroupArn=group_arn("shop"), roleArn=ROLE,
                                           dataSource={"dataLocation": str(tmp_path / "gone.csv")})[
        "dataDeletionJobArn"]
    job = wait_deletion(control, arn)
    assert job["status"] == "FAILED" and "numDeleted" not in job
    assert job["failureReason"] == ("gone.csv: header column 'USER' is not a field of the schema (USER_ID)")
    with pytest.raises(control.exceptions.ResourceAlreadyExistsException):
        control.create_data_deletion_job(jobName="j", datasetGroupArn=group_arn("shop"), roleArn=ROLE,
                                         dataSource={"dataLocation": str(tmp_path / "gone.csv")})


def artifact_users(stack: Stack, version_arn: str) -> list[str]:
    """The user ids the trainer wrote beside the version's model (boto3 drops our `artifact`)."""
    solution, version = version_arn.split(":solution/", 1)[1].rsplit("/", 1)
    folder = stack.server.data_dir / "artifacts" / solution / version
    return json.loads((folder / "user_ids.json").read_text())


def wait_deletion(control: Any, arn: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := control.describe_data_deletion_job(dataDeletionJobArn=arn)["dataDeletionJob"])["status"] \
            not in ("COMPLETED", "FAILED"):
        assert job["status"] in ("PENDING", "IN_PROGRESS"), job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    return job
