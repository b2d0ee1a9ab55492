"""A user's data through boto3's `personalize` client: schemas, datasets, imports, exports."""
from __future__ import annotations

import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support import DATASETS, Server

ML100K = DATASETS / "ml-100k"
ROLE = "arn:aws:iam::000000000000:role/personalize"


def schema(*fields: dict[str, Any], name: str = "Schema") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "com.amazonaws.personalize.schema",
                       "fields": list(fields), "version": "1.0"})


def f(name: str, type_: Any = "string", **flags: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **flags}


INTERACTIONS = schema(f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long"), f("EVENT_TYPE"),
                      f("EVENT_VALUE", ["null", "float"]), name="Interactions")
ITEMS = schema(f("ITEM_ID"), f("TITLE", textual=True), f("GENRES", ["null", "string"], categorical=True),
               f("RELEASE_YEAR", ["null", "int"]), f("CREATION_TIMESTAMP", ["null", "long"]), name="Items")
USERS = schema(f("USER_ID"), f("AGE", "int"), f("GENDER", categorical=True),
               f("OCCUPATION", categorical=True), f("ZIP_CODE"), name="Users")


def wait_job(describe: Any, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = describe()
        if job["status"] in ("ACTIVE", "CREATE FAILED"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job still {job['status']} after {timeout}s")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def rows(path: Path) -> int:
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    return sum(len(read_csv(p)) for p in files)


class Dataset:
    """One dataset of a group, with the calls a user makes on it."""

    def __init__(self, control: Any, group: str, kind: str, text: str) -> None:
        self.control = control
        schema_arn = control.create_schema(name=f"{group}-{kind.lower()}", schema=text)["schemaArn"]
        dsg = f"arn:aws:personalize:us-east-1:000000000000:dataset-group/{group}"
        self.arn = control.create_dataset(name=f"{group}-{kind.lower()}", schemaArn=schema_arn,
                                          datasetGroupArn=dsg, datasetType=kind)["datasetArn"]

    def import_(self, location: str | Path, job: str, mode: str = "FULL") -> dict[str, Any]:
        arn = self.control.create_dataset_import_job(
            jobName=job, datasetArn=self.arn, dataSource={"dataLocation": str(location)},
            roleArn=ROLE, importMode=mode)["datasetImportJobArn"]
        return wait_job(lambda: self.control.describe_dataset_import_job(
            datasetImportJobArn=arn)["datasetImportJob"])

    def export(self, to: Path, job: str, mode: str = "BULK") -> Path:
        arn = self.control.create_dataset_export_job(
            jobName=job, datasetArn=self.arn, roleArn=ROLE, ingestionMode=mode,
            jobOutput={"s3DataDestination": {"path": to.as_uri()}})["datasetExportJobArn"]
        done = wait_job(lambda: self.control.describe_dataset_export_job(
            datasetExportJobArn=arn)["datasetExportJob"])
        assert done["status"] == "ACTIVE", done
        return to / job


@pytest.fixture
def control(embedded_server: Server) -> Any:
    if not ML100K.is_dir():
        pytest.fail(f"the shared datasets are missing: expected {ML100K}")
    return embedded_server.client("personalize")


def test_import_ml100k_list_describe_and_export(control: Any, tmp_path: Path) -> None:
    group = control.create_dataset_group(name="movies")["datasetGroupArn"]
    data = {kind: Dataset(control, "movies", kind, text) for kind, text in
            (("INTERACTIONS", INTERACTIONS), ("ITEMS", ITEMS), ("USERS", USERS))}
    for kind, ds in data.items():
        job = ds.import_(ML100K / f"{kind.lower()}.csv", f"movies-{kind.lower()}")
        assert job["status"] == "ACTIVE", job.get("failureReason")
        assert job["importMode"] == "FULL"

    # list everything, one item per page, the way a paginator walks it
    pages = control.get_paginator("list_datasets").paginate(
        datasetGroupArn=group, PaginationConfig={"PageSize": 1})
    listed = [d for page in pages for d in page["datasets"]]
    assert sorted(d["datasetType"] for d in listed) == ["INTERACTIONS", "ITEMS", "USERS"]
    assert {d["status"] for d in listed} == {"ACTIVE"}
    schemas = [s["name"] for p in control.get_paginator("list_schemas").paginate(
        PaginationConfig={"PageSize": 2}) for s in p["schemas"]]
    assert sorted(schemas) == ["movies-interactions", "movies-items", "movies-users"]
    jobs = control.list_dataset_import_jobs(datasetArn=data["ITEMS"].arn)["datasetImportJobs"]
    assert [j["jobName"] for j in jobs] == ["movies-items"]
    described = control.describe_dataset(datasetArn=data["USERS"].arn)["dataset"]
    assert described["datasetGroupArn"] == group and described["schemaArn"].endswith("schema/movies-users")
    assert "USER_ID" in control.describe_schema(schemaArn=described["schemaArn"])["schema"]["schema"]

    # get the data out again: the same rows, and a folder an import job reads back
    for kind in ("INTERACTIONS", "ITEMS", "USERS"):
        out = data[kind].export(tmp_path / "export", f"export-{kind.lower()}")
        assert rows(out) == rows(ML100K / f"{kind.lower()}.csv")
    again = data["INTERACTIONS"].import_(tmp_path / "export" / "export-interactions", "reimport")
    assert again["status"] == "ACTIVE", again
    assert rows(data["INTERACTIONS"].export(tmp_path / "e2", "after-reimport")) == 100_000

    # nothing can be deleted out from under the data, then everything can
    with pytest.raises(control.exceptions.ResourceInUseException):
        control.delete_dataset_group(datasetGroupArn=group)
    with pytest.raises(control.exceptions.ResourceInUseException):
        control.delete_schema(schemaArn=described["schemaArn"])
    for ds in data.values():
        control.delete_dataset(datasetArn=ds.arn)
    control.delete_dataset_group(datasetGroupArn=group)
    assert control.list_datasets(datasetGroupArn=group)["datasets"] == []


def test_incremental_imports_append_and_upsert_items(control: Any, tmp_path: Path) -> None:
    control.create_dataset_group(name="shop")
    clicks = Dataset(control, "shop", "INTERACTIONS",
                     schema(f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long")))
    items = Dataset(control, "shop", "ITEMS", schema(f("ITEM_ID"), f("PRICE", "float")))
    (tmp_path / "a.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu2,i2,1700000001\n")
    (tmp_path / "b.csv").write_text("TIMESTAMP,USER_ID,ITEM_ID\n1700000002,u1,i3\n")  # any column order
    assert clicks.import_(tmp_path / "a.csv", "c1")["status"] == "ACTIVE"
    assert clicks.import_(tmp_path / "b.csv", "c2", "INCREMENTAL")["status"] == "ACTIVE"
    assert rows(clicks.export(tmp_path / "out", "c-all")) == 3
    assert clicks.import_(tmp_path / "b.csv", "c3", "FULL")["status"] == "ACTIVE"
    assert rows(clicks.export(tmp_path / "out", "c-full")) == 1

    (tmp_path / "items1.csv").write_text("ITEM_ID,PRICE\ni1,1.5\ni2,2.0\n")
    (tmp_path / "items2.csv").write_text("ITEM_ID,PRICE\ni2,9.5\ni3,3.0\n")
    assert items.import_(tmp_path / "items1.csv", "p1")["status"] == "ACTIVE"
    assert items.import_(tmp_path / "items2.csv", "p2", "INCREMENTAL")["status"] == "ACTIVE"
    exported = items.export(tmp_path / "out", "items") / "part-00000.csv"
    prices = {r["ITEM_ID"]: float(r["PRICE"]) for r in read_csv(exported)}
    assert prices == {"i1": 1.5, "i2": 9.5, "i3": 3.0}  # i2 upserted, not duplicated


def test_a_folder_location_imports_every_csv_in_it(control: Any, tmp_path: Path) -> None:
    control.create_dataset_group(name="folder")
    clicks = Dataset(control, "folder", "INTERACTIONS",
                     schema(f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long")))
    (tmp_path / "in").mkdir()
    for day in range(3):
        (tmp_path / "in" / f"day{day}.csv").write_text(
            "USER_ID,ITEM_ID,TIMESTAMP\n" + "".join(f"u{n},i{n},{1700000000 + n}\n" for n in range(50)))
    (tmp_path / "in" / "notes.txt").write_text("not data")
    job = clicks.import_((tmp_path / "in").as_uri(), "days")
    assert job["status"] == "ACTIVE", job
    assert rows(clicks.export(tmp_path / "out", "days")) == 150


BAD_CSV = [
    ("missing-column", b"USER_ID,ITEM_ID\nu1,i1\n", "lacks required column(s) TIMESTAMP"),
    ("unknown-column", b"USER_ID,ITEM_ID,TIMESTAMP,COLOR\nu1,i1,1,red\n", "'COLOR' is not a field"),
    ("bad-timestamp", b"USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\nu1,i2,2024-01-01\nu1,i3,x\n",
     "2 of 3 rows are invalid (66.7%), more than the 10% an import may skip: TIMESTAMP is not a long "
     "(Unix epoch seconds): 2. The first is row 2 (line 3 of bad-timestamp.csv), column TIMESTAMP: "
     "'2024-01-01' is not a long"),
    ("milliseconds", b"USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000000\n",
     "column TIMESTAMP: '1700000000000' is not Unix epoch seconds"),
    ("wrong-type", b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_VALUE\nu1,i1,1,4.5\nu1,i1,1,high\n",
     "row 2 (line 3 of wrong-type.csv), column EVENT_VALUE: 'high' is not a float"),
    ("empty-id", b"USER_ID,ITEM_ID,TIMESTAMP\nu1,,1\n", "column ITEM_ID: is empty but the field is required"),
    ("short-row", b"USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1\nu2,i2\n",
     "row 2 (line 3 of short-row.csv): expected 3 fields, found 2"),
    ("empty", b"", "empty"),
    ("header-only", b"USER_ID,ITEM_ID,TIMESTAMP\n", "has a header but no rows"),
]


def test_bad_csv_fails_the_job_with_row_and_column_and_imports_nothing(
        control: Any, tmp_path: Path) -> None:
    control.create_dataset_group(name="bad")
    clicks = Dataset(control, "bad", "INTERACTIONS", schema(
        f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long"), f("EVENT_VALUE", ["null", "float"])))
    (tmp_path / "good.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
    assert clicks.import_(tmp_path / "good.csv", "good")["status"] == "ACTIVE"
    garbage = tmp_path / "garbage.csv"
    with open(garbage, "wb") as out:  # 100 MB of random bytes
        for _ in range(100):
            out.write(bytes(range(256)) * 4096)
    cases = [*BAD_CSV, ("garbage", None, "garbage.csv: ")]
    for name, content, reason in cases:
        path = garbage if content is None else tmp_path / f"{name}.csv"
        if content is not None:
            path.write_bytes(content)
        job = clicks.import_(path, f"bad-{name}", "INCREMENTAL")
        assert job["status"] == "CREATE FAILED", (name, job)
        assert reason in job["failureReason"], (name, job["failureReason"])
    missing = clicks.import_(tmp_path / "nope.csv", "bad-missing")
    assert "does not exist" in missing["failureReason"]
    with pytest.raises(botocore.exceptions.ClientError, match="s3:// locations"):
        clicks.import_("s3://bucket/key.csv", "bad-s3")
    assert rows(clicks.export(tmp_path / "out", "after")) == 1  # the good import, untouched


def test_bad_requests_get_personalize_errors_and_create_nothing(control: Any) -> None:
    group = control.create_dataset_group(name="errs")["datasetGroupArn"]
    errors = control.exceptions
    bad_schemas = [
        (schema(f("USER_ID"), f("AGE", "int", categorical=True)), 'field "AGE"'),
        (schema(f("USER_ID"), f("TAGS", {"type": "array", "items": "string"})), 'field "TAGS"'),
        (schema(f("userId"), f("AGE", "int")), 'field "userId"'),
        ('{"type": "record",', "not valid JSON"),
    ]
    for text, needle in bad_schemas:
        with pytest.raises(errors.InvalidInputException, match=needle):
            control.create_schema(name="bad", schema=text)
    assert control.list_schemas()["schemas"] == []

    users = control.create_schema(name="users", schema=USERS)["schemaArn"]
    with pytest.raises(errors.ResourceAlreadyExistsException):
        control.create_schema(name="users", schema=USERS)
    with pytest.raises(errors.InvalidInputException, match="ITEM_ID"):  # a USERS schema for items
        control.create_dataset(name="items", schemaArn=users, datasetGroupArn=group, datasetType="ITEMS")
    with pytest.raises(errors.InvalidInputException, match="datasetType"):
        control.create_dataset(name="x", schemaArn=users, datasetGroupArn=group, datasetType="EVENTS")
    with pytest.raises(errors.ResourceNotFoundException):
        control.create_dataset(name="x", schemaArn=users, datasetType="USERS",
                               datasetGroupArn=group.replace("errs", "nope"))
    with pytest.raises(errors.InvalidInputException, match="name"):
        control.create_schema(name="x" * 64, schema=USERS)
    with pytest.raises(errors.InvalidInputException, match="name"):
        control.create_schema(name="-bad", schema=USERS)
    with pytest.raises(errors.ResourceNotFoundException):
        control.describe_dataset_import_job(
            datasetImportJobArn="arn:aws:personalize:us-east-1:000000000000:dataset-import-job/nope")
    assert control.list_datasets(datasetGroupArn=group)["datasets"] == []

    ds = control.create_dataset(name="users", schemaArn=users, datasetGroupArn=group,
                                datasetType="USERS")["datasetArn"]
    with pytest.raises(errors.ResourceAlreadyExistsException):
        control.create_dataset(name="users2", schemaArn=users, datasetGroupArn=group, datasetType="USERS")
    with pytest.raises(botocore.exceptions.ClientError, match="InvalidInputException"):
        control.create_dataset_import_job(jobName="j", datasetArn=ds, dataSource={}, roleArn=ROLE)
    assert control.list_dataset_import_jobs(datasetArn=ds)["datasetImportJobs"] == []


def test_concurrent_creates_of_one_name_have_exactly_one_winner(control: Any) -> None:
    def create(_: int) -> str:
        try:
            control.create_schema(name="race", schema=USERS)
            return "won"
        except control.exceptions.ResourceAlreadyExistsException:
            return "lost"

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(create, range(16)))
    assert results.count("won") == 1 and results.count("lost") == 15


def test_update_dataset_adds_a_column_and_old_rows_read_back(control: Any, tmp_path: Path) -> None:
    control.create_dataset_group(name="evolve")
    items = Dataset(control, "evolve", "ITEMS", schema(f("ITEM_ID"), f("PRICE", "float")))
    (tmp_path / "v1.csv").write_text("ITEM_ID,PRICE\ni1,1.5\n")
    assert items.import_(tmp_path / "v1.csv", "v1")["status"] == "ACTIVE"
    wider = control.create_schema(name="evolve-items-v2", schema=schema(
        f("ITEM_ID"), f("PRICE", "float"), f("BRAND", ["null", "string"], categorical=True)))["schemaArn"]
    narrower = control.create_schema(name="evolve-items-v3", schema=schema(
        f("ITEM_ID"), f("BRAND", "string", categorical=True)))["schemaArn"]
    with pytest.raises(control.exceptions.InvalidInputException, match="PRICE"):
        control.update_dataset(datasetArn=items.arn, schemaArn=narrower)
    control.update_dataset(datasetArn=items.arn, schemaArn=wider)
    described = control.describe_dataset(datasetArn=items.arn)["dataset"]
    assert described["schemaArn"] == wider and described["latestDatasetUpdate"]["status"] == "ACTIVE"
    (tmp_path / "v2.csv").write_text("ITEM_ID,PRICE,BRAND\ni2,2.5,acme\n")
    assert items.import_(tmp_path / "v2.csv", "v2", "INCREMENTAL")["status"] == "ACTIVE"
    exported = items.export(tmp_path / "out", "both") / "part-00000.csv"
    got = {r["ITEM_ID"]: r for r in read_csv(exported)}
    assert got["i1"]["BRAND"] == "" and got["i2"]["BRAND"] == "acme"


def test_resources_and_data_survive_a_restart(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        control = server.client("personalize")
        control.create_dataset_group(name="keep")
        clicks = Dataset(control, "keep", "INTERACTIONS",
                         schema(f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long")))
        (tmp_path / "a.csv").write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
        assert clicks.import_(tmp_path / "a.csv", "a")["status"] == "ACTIVE"
    finally:
        server.kill()
    server = Server(tmp_path / "data").start()
    try:
        control = server.client("personalize")
        assert control.describe_dataset(datasetArn=clicks.arn)["dataset"]["status"] == "ACTIVE"
        clicks.control = control
        assert rows(clicks.export(tmp_path / "out", "after-restart")) == 1
    finally:
        server.stop()


def test_an_import_interrupted_by_a_crash_finishes_after_restart_exactly_once(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    line = b"u%d,i%d,1700000000\n"
    with open(big, "wb") as out:  # 5,000,000 rows: seconds of import, long enough to kill it
        out.write(b"USER_ID,ITEM_ID,TIMESTAMP\n")
        block = b"".join(line % (n, n) for n in range(100_000))
        for _ in range(50):
            out.write(block)
    server = Server(tmp_path / "data").start()
    try:
        control = server.client("personalize")
        control.create_dataset_group(name="crash")
        clicks = Dataset(control, "crash", "INTERACTIONS",
                         schema(f("USER_ID"), f("ITEM_ID"), f("TIMESTAMP", "long")))
        arn = control.create_dataset_import_job(jobName="big", datasetArn=clicks.arn, roleArn=ROLE,
                                                dataSource={"dataLocation": str(big)})["datasetImportJobArn"]
        deadline = time.monotonic() + 30
        while control.describe_dataset_import_job(datasetImportJobArn=arn)[
                "datasetImportJob"]["status"] != "CREATE IN_PROGRESS" and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.kill()  # SIGKILL mid-import
    server = Server(tmp_path / "data").start()
    try:
        control = clicks.control = server.client("personalize")
        job = wait_job(lambda: control.describe_dataset_import_job(
            datasetImportJobArn=arn)["datasetImportJob"])
        assert job["status"] == "ACTIVE", job.get("failureReason")
        assert "running it again" in server.output()  # the restarted server took the job over
        assert rows(clicks.export(tmp_path / "out", "after-crash")) == 5_000_000
    finally:
        server.stop()
