"""Import and export jobs read and write only under the server's file roots.

A caller who can reach the control plane names a `dataLocation` or an export `path`; the
server must not become a way to read its own files (its environment, /etc/passwd, its
control database) or to write anywhere else. Each probe is refused when the job is created,
nothing is read or written, and no job is left behind.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from support import Server

ROLE = "arn:aws:iam::000000000000:role/personalize"
SECRET = "s3cr3t-do-not-leak"
ITEMS = json.dumps({"type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema",
                    "fields": [{"name": "ITEM_ID", "type": "string"},
                               {"name": "GENRE", "type": "string", "categorical": True}],
                    "version": "1.0"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the product's default: jobs may use only `<data dir>/files`."""
    s = Server(tmp_path_factory.mktemp("roots") / "data", env={"OPZ_FILE_ROOTS": ""}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dataset(server: Server) -> str:
    control = server.client("personalize")
    group = control.create_dataset_group(name="roots")["datasetGroupArn"]
    schema = control.create_schema(name="roots-items", schema=ITEMS)["schemaArn"]
    return control.create_dataset(name="roots-items", schemaArn=schema, datasetGroupArn=group,
                                  datasetType="ITEMS")["datasetArn"]


def files(server: Server) -> Path:
    return server.data_dir / "files"


def outside(server: Server) -> Path:
    """A CSV an attacker would like to read: a valid items file, beside the data dir."""
    path = server.data_dir.parent / "private.csv"
    path.write_text(f"ITEM_ID,GENRE\n{SECRET},x\n")
    return path


def import_job(server: Server, dataset: str, location: str, name: str) -> dict[str, Any]:
    control = server.client("personalize")
    arn = control.create_dataset_import_job(jobName=name, datasetArn=dataset, roleArn=ROLE,
                                            dataSource={"dataLocation": location})["datasetImportJobArn"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = control.describe_dataset_import_job(datasetImportJobArn=arn)["datasetImportJob"]
        if job["status"] in ("ACTIVE", "CREATE FAILED"):
            return job
        time.sleep(0.1)
    raise TimeoutError(job)


def refused(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == "InvalidInputException"
    return caught.value.response["Error"]["Message"]


def test_a_file_under_the_root_imports_and_exports(server: Server, dataset: str) -> None:
    (files(server) / "items.csv").write_text("ITEM_ID,GENRE\ni1,Comedy\ni2,Drama\n")
    assert import_job(server, dataset, (files(server) / "items.csv").as_uri(), "ok")["status"] == "ACTIVE"
    control = server.client("personalize")
    arn = control.create_dataset_export_job(
        jobName="out", datasetArn=dataset, roleArn=ROLE, ingestionMode="BULK",
        jobOutput={"s3DataDestination": {"path": str(files(server) / "exports")}})["datasetExportJobArn"]
    deadline = time.monotonic() + 60
    while (job := control.describe_dataset_export_job(datasetExportJobArn=arn)["datasetExportJob"])[
            "status"] != "ACTIVE":
        assert job["status"] != "CREATE FAILED" and time.monotonic() < deadline, job
        time.sleep(0.1)
    assert "\"i2\",\"Drama\"" in (files(server) / "exports" / "out" / "part-00000.csv").read_text()


def test_probes_outside_the_roots_are_refused_when_created(server: Server, dataset: str) -> None:
    private = outside(server)
    (files(server) / "link.csv").symlink_to(private)
    (files(server) / "linked-folder").symlink_to(private.parent, target_is_directory=True)
    probes = ["/proc/self/environ", "/etc/passwd", "file:///etc/passwd", str(private), private.as_uri(),
              str(files(server) / ".." / "control.db"), str(files(server) / "link.csv"),
              str(files(server) / "linked-folder"), "relative/items.csv", "file://elsewhere/etc/passwd",
              "ftp://host/x.csv", "/nonexistent/" + "x" * 300, "s3://no-s3-roots/items.csv"]
    control = server.client("personalize")
    for i, probe in enumerate(probes):
        message = refused(lambda p=probe, n=i: control.create_dataset_import_job(
            jobName=f"probe-{n}", datasetArn=dataset, roleArn=ROLE, dataSource={"dataLocation": p}))
        assert SECRET not in message and "root:" not in message, (probe, message)
        assert len(message) < 600, message
    names = {j["jobName"] for j in control.list_dataset_import_jobs(datasetArn=dataset)["datasetImportJobs"]}
    assert not any(n.startswith("probe-") for n in names), names


def test_a_link_inside_an_allowed_folder_is_not_followed(server: Server, dataset: str) -> None:
    """The folder is under the root; one of its files points outside: the job fails naming
    the link, and quotes nothing of what the link points at."""
    folder = files(server) / "batch"
    folder.mkdir()
    (folder / "a.csv").write_text("ITEM_ID,GENRE\nfine,x\n")
    (folder / "b.csv").symlink_to(outside(server))
    job = import_job(server, dataset, str(folder), "via-link")
    assert job["status"] == "CREATE FAILED"
    assert "outside the allowed file locations" in job["failureReason"]
    assert SECRET not in job["failureReason"]


def test_exports_write_nowhere_else(server: Server, dataset: str) -> None:
    control = server.client("personalize")
    target = server.data_dir.parent / "cron.d"
    for i, path in enumerate([str(target), target.as_uri(), "exports-here", str(files(server) / ".." / "x")]):
        refused(lambda p=path, n=i: control.create_dataset_export_job(
            jobName=f"escape-{n}", datasetArn=dataset, roleArn=ROLE,
            jobOutput={"s3DataDestination": {"path": p}}))
    assert not target.exists()
    (files(server) / "sneaky").symlink_to(target.parent, target_is_directory=True)
    refused(lambda: control.create_dataset_export_job(
        jobName="via-link", datasetArn=dataset, roleArn=ROLE,
        jobOutput={"s3DataDestination": {"path": str(files(server) / "sneaky")}}))
    assert not (target.parent / "via-link").exists()
    assert not any(Path(os.getcwd()).glob("exports-here*"))
