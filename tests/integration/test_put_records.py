"""PutItems / PutUsers through boto3's personalize-events client, embedded and on Kafka:
the records land in the items/users datasets, upserted by id, next to the bulk import."""
from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from support import ROOT, Server, api_stack

from kernel.contract import DatasetRecord, records_topic, records_topic_pattern
from stream.log import KafkaEventLog

pytestmark = pytest.mark.integration
ROLE = "arn:aws:iam::000000000000:role/personalize"
RECORD_SCHEMA = json.loads((ROOT / "kernel" / "schemas" / "record.v1.json").read_text())


def schema(*fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": "S", "fields": list(fields)})


ITEMS = schema({"name": "ITEM_ID", "type": "string"}, {"name": "PRICE", "type": ["null", "float"]},
               {"name": "GENRES", "type": ["null", "string"], "categorical": True},
               {"name": "IN_STOCK", "type": ["null", "boolean"]})
USERS = schema({"name": "USER_ID", "type": "string"}, {"name": "AGE", "type": "int"},
               {"name": "MEMBERSHIP_LEVEL", "type": ["null", "string"], "categorical": True})


@pytest.fixture(params=["embedded", "kafka"])
def server(request: pytest.FixtureRequest, tmp_path: Path, unique: str) -> Iterator[Server]:
    """The API, and in Kafka mode a stream worker sharing its data dir (the dataset writer)."""
    yield from api_stack(request, tmp_path, unique, distributed=request.param == "kafka")


def export(control: Any, dataset_arn: str, to: Path, mode: str) -> dict[str, dict[str, str]]:
    job = f"x{time.monotonic_ns()}"
    arn = control.create_dataset_export_job(jobName=job, datasetArn=dataset_arn, roleArn=ROLE,
                                            ingestionMode=mode,
                                            jobOutput={"s3DataDestination": {"path": to.as_uri()}})
    while (desc := control.describe_dataset_export_job(
            datasetExportJobArn=arn["datasetExportJobArn"])["datasetExportJob"])["status"] != "ACTIVE":
        assert desc["status"] != "CREATE FAILED", desc
        time.sleep(0.05)
    with open(to / job / "part-00000.csv", newline="") as f:
        return {next(iter(r.values())): r for r in csv.DictReader(f)}


def wait_export(control: Any, dataset_arn: str, to: Path, mode: str, want: int,
                timeout: float = 60) -> dict[str, dict[str, str]]:
    """PutItems answers once the record is in the log; the dataset writer follows within moments."""
    deadline = time.monotonic() + timeout
    while len(rows := export(control, dataset_arn, to, mode)) < want and time.monotonic() < deadline:
        time.sleep(0.2)
    return rows


def test_put_items_and_users_upsert_next_to_the_bulk_import(server: Server, unique: str,
                                                             tmp_path: Path) -> None:
    control, events = server.client("personalize"), server.client("personalize-events")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    items_schema = control.create_schema(name=f"{unique}-items", schema=ITEMS)["schemaArn"]
    users_schema = control.create_schema(name=f"{unique}-users", schema=USERS)["schemaArn"]
    items = control.create_dataset(name=f"{unique}-items", schemaArn=items_schema, datasetGroupArn=group,
                                   datasetType="ITEMS")["datasetArn"]
    users = control.create_dataset(name=f"{unique}-users", schemaArn=users_schema, datasetGroupArn=group,
                                   datasetType="USERS")["datasetArn"]
    (tmp_path / "items.csv").write_text("ITEM_ID,PRICE,GENRES\ni1,1.5,Comedy\ni2,2.5,Drama|Crime\n")
    job = control.create_dataset_import_job(jobName=f"{unique}-bulk", datasetArn=items, roleArn=ROLE,
                                            dataSource={"dataLocation": str(tmp_path / "items.csv")})
    while control.describe_dataset_import_job(datasetImportJobArn=job["datasetImportJobArn"])[
            "datasetImportJob"]["status"] != "ACTIVE":
        time.sleep(0.05)

    events.put_items(datasetArn=items, items=[
        {"itemId": "i2", "properties": json.dumps({"price": 9.5, "genres": "Drama", "inStock": True})},
        {"itemId": "i3", "properties": json.dumps({"price": 3, "genres": "Horror|Comedy"})}])
    events.put_users(datasetArn=users, users=[
        {"userId": "u1", "properties": json.dumps({"age": 31, "membershipLevel": "gold"})},
        {"userId": "u2", "properties": json.dumps({"age": 45})}])

    every = wait_export(control, items, tmp_path / "out", "ALL", 3)
    assert {k: (v["PRICE"], v["GENRES"]) for k, v in every.items()} == {
        "i1": ("1.5", "Comedy"), "i2": ("9.5", "Drama"), "i3": ("3", "Horror|Comedy")}
    assert every["i2"]["IN_STOCK"] == "true"
    assert set(export(control, items, tmp_path / "out", "BULK")) == {"i1", "i2"}
    assert set(export(control, items, tmp_path / "out", "PUT")) == {"i2", "i3"}
    people = wait_export(control, users, tmp_path / "out", "ALL", 2)
    assert {k: (v["AGE"], v["MEMBERSHIP_LEVEL"]) for k, v in people.items()} == {
        "u1": ("31", "gold"), "u2": ("45", "")}

    # a FULL import later than a put wins for its ids; records put individually stay
    (tmp_path / "again.csv").write_text("ITEM_ID,PRICE\ni2,7.0\n")
    job = control.create_dataset_import_job(jobName=f"{unique}-again", datasetArn=items, roleArn=ROLE,
                                            dataSource={"dataLocation": str(tmp_path / "again.csv")})
    while control.describe_dataset_import_job(datasetImportJobArn=job["datasetImportJobArn"])[
            "datasetImportJob"]["status"] != "ACTIVE":
        time.sleep(0.05)
    after = export(control, items, tmp_path / "out", "ALL")
    assert {k: v["PRICE"] for k, v in after.items()} == {"i2": "7", "i3": "3"}


def test_bad_records_get_personalize_errors_and_nothing_is_written(server: Server, unique: str,
                                                                   tmp_path: Path) -> None:
    control, events = server.client("personalize"), server.client("personalize-events")
    group = control.create_dataset_group(name=unique)["datasetGroupArn"]
    users_schema = control.create_schema(name=f"{unique}-users", schema=USERS)["schemaArn"]
    users = control.create_dataset(name=f"{unique}-users", schemaArn=users_schema, datasetGroupArn=group,
                                   datasetType="USERS")["datasetArn"]
    bad = [
        ({"age": "old"}, "users[0].properties: field \"age\": \"old\" is not an int"),
        ({"age": 30, "shoeSize": 42}, "field \"shoeSize\": is not a field"),
        ({"membershipLevel": "gold"}, "requires AGE"),
        ({"age": 2**40}, "is not an int"),
        ({"age": 30, "userId": "x"}, "the USER_ID is the record's own id"),
    ]
    for props, needle in bad:
        with pytest.raises(events.exceptions.InvalidInputException, match=re.escape(needle)):
            events.put_users(datasetArn=users, users=[{"userId": "u1", "properties": json.dumps(props)}])
    with pytest.raises(events.exceptions.InvalidInputException, match="not ITEMS"):
        events.put_items(datasetArn=users, items=[{"itemId": "i", "properties": "{}"}])
    with pytest.raises(events.exceptions.ResourceNotFoundException):
        events.put_users(datasetArn=users.replace(unique, "nope"), users=[{"userId": "u"}])
    with pytest.raises(events.exceptions.InvalidInputException, match="JSON object"):
        events.put_users(datasetArn=users, users=[{"userId": "u1", "properties": "[1]"}])
    events.put_users(datasetArn=users, users=[{"userId": "ok", "properties": '{"age": 1}'}])
    assert set(wait_export(control, users, tmp_path / "out", "PUT", 1)) == {"ok"}


async def test_records_go_to_compacted_topics_keyed_by_id(kafka_bootstrap: str, unique: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    log = KafkaEventLog(kafka_bootstrap, client_id=unique)
    await log.start()
    try:
        kinds = ["ITEMS", "USERS", "ACTIONS", "ACTION_INTERACTIONS"]
        records = [DatasetRecord(record_id=f"r{i}", dataset_group=unique, dataset_type=kind,
                                 id=f"{kind}-{i}", fields={"AGE": i}, received_at=1.0)
                   for i, kind in enumerate(kinds)]
        await log.append(records)
        got: list[DatasetRecord] = []
        deadline = time.monotonic() + 30
        while len(got) < len(kinds) and time.monotonic() < deadline:
            got += await log.read(unique, topics=records_topic_pattern(unique), timeout_s=1)
        assert sorted(got, key=lambda r: r.record_id) == records
        for r in got:
            jsonschema.validate(json.loads(r.model_dump_json()), RECORD_SCHEMA)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            for kind in kinds:  # upserted records: the newest per id; action interactions: each one
                topic = records_topic(unique, kind)
                configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
                entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
                assert entries["cleanup.policy"] == ("delete" if kind == "ACTION_INTERACTIONS" else "compact")
        finally:
            await admin.close()
    finally:
        await log.close()
