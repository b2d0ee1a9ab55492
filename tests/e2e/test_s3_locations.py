"""Import and export jobs on s3:// locations, against a real S3-compatible store.

A Personalize user keeps the CSV files in a bucket; the server reads and writes them with
its own credentials, only under the prefixes its operator allowed (OPZ_S3_ROOTS), and a
`personalize import` on another machine uploads the files there rather than sending a
path of its own disk.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from support import S3Service, Server

ROLE = "arn:aws:iam::000000000000:role/personalize"
ITEMS = json.dumps({"type": "record", "name": "Items", "namespace": "com.amazonaws.personalize.schema",
                    "fields": [{"name": "ITEM_ID", "type": "string"},
                               {"name": "GENRE", "type": "string", "categorical": True}],
                    "version": "1.0"})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, s3_service: S3Service, bucket: str) -> Iterator[Server]:
    """Jobs may use s3://<bucket>/allowed with the server's own keys, and nothing else in S3."""
    s = Server(tmp_path_factory.mktemp("s3") / "data", env={
        "OPZ_S3_ROOTS": f"s3://{bucket}/allowed", "OPZ_S3_ENDPOINT_URL": s3_service.endpoint,
        "AWS_ACCESS_KEY_ID": s3_service.access_key, "AWS_SECRET_ACCESS_KEY": s3_service.secret_key}).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dataset(server: Server) -> str:
    control = server.client("personalize")
    group = control.create_dataset_group(name="s3")["datasetGroupArn"]
    schema = control.create_schema(name="s3-items", schema=ITEMS)["schemaArn"]
    return control.create_dataset(name="s3-items", schemaArn=schema, datasetGroupArn=group,
                                  datasetType="ITEMS")["datasetArn"]


def finished(describe: Any, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while (job := describe()[key])["status"] not in ("ACTIVE", "CREATE FAILED"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    return job


def import_job(server: Server, dataset: str, location: str, name: str) -> dict[str, Any]:
    control = server.client("personalize")
    arn = control.create_dataset_import_job(jobName=name, datasetArn=dataset, roleArn=ROLE, importMode="FULL",
                                            dataSource={"dataLocation": location})["datasetImportJobArn"]
    return finished(lambda: control.describe_dataset_import_job(datasetImportJobArn=arn), "datasetImportJob")


def export(server: Server, dataset: str, path: str, name: str) -> dict[str, Any]:
    control = server.client("personalize")
    arn = control.create_dataset_export_job(
        jobName=name, datasetArn=dataset, roleArn=ROLE, ingestionMode="BULK",
        jobOutput={"s3DataDestination": {"path": path}})["datasetExportJobArn"]
    return finished(lambda: control.describe_dataset_export_job(datasetExportJobArn=arn), "datasetExportJob")


def read(s3: S3Service, bucket: str, key: str) -> str:
    return s3.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_a_bucket_file_imports_and_the_dataset_exports_back(
        server: Server, dataset: str, s3_service: S3Service, bucket: str) -> None:
    s3_service.client().put_object(Bucket=bucket, Key="allowed/items.csv",
                                   Body=b"ITEM_ID,GENRE\ni1,Comedy\ni2,Drama\n")
    assert import_job(server, dataset, f"s3://{bucket}/allowed/items.csv", "from-s3")["status"] == "ACTIVE"
    assert export(server, dataset, f"s3://{bucket}/allowed/exports/", "out")["status"] == "ACTIVE"
    exported = read(s3_service, bucket, "allowed/exports/out/part-00000.csv")
    assert '"i2","Drama"' in exported and '"i1","Comedy"' in exported
    assert not list((server.data_dir / "spool").iterdir())  # downloads and uploads left nothing behind


def test_a_bucket_folder_imports_every_csv_in_it(
        server: Server, dataset: str, s3_service: S3Service, bucket: str) -> None:
    s3 = s3_service.client()
    s3.put_object(Bucket=bucket, Key="allowed/batch/a.csv", Body=b"ITEM_ID,GENRE\nfa,x\n")
    s3.put_object(Bucket=bucket, Key="allowed/batch/b.csv", Body=b"ITEM_ID,GENRE\nfb,y\n")
    s3.put_object(Bucket=bucket, Key="allowed/batch/notes.txt", Body=b"not a csv")
    s3.put_object(Bucket=bucket, Key="allowed/batch/deeper/c.csv", Body=b"ITEM_ID,GENRE\nfc,z\n")
    assert import_job(server, dataset, f"s3://{bucket}/allowed/batch/", "folder")["status"] == "ACTIVE"
    export(server, dataset, f"s3://{bucket}/allowed/exports", "folder-out")
    rows = read(s3_service, bucket, "allowed/exports/folder-out/part-00000.csv").splitlines()[1:]
    assert sorted(rows) == ['"fa","x"', '"fb","y"']  # FULL: only this import's rows; no sub-folder


def test_locations_outside_the_s3_roots_are_refused_when_created(
        server: Server, dataset: str, s3_service: S3Service, bucket: str) -> None:
    s3_service.client().put_object(Bucket=bucket, Key="private/secret.csv", Body=b"ITEM_ID,GENRE\nsecret,x\n")
    control = server.client("personalize")
    probes = [f"s3://{bucket}/private/secret.csv", f"s3://{bucket}/allowed/../private/secret.csv",
              f"s3://{bucket}/allowedx/secret.csv", f"s3://{bucket}/allowed//../private/secret.csv",
              "s3://another-bucket/allowed/items.csv", "s3://Bad_Bucket/allowed/x.csv", f"s3://{bucket}"]
    for i, probe in enumerate(probes):
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            control.create_dataset_import_job(jobName=f"probe-{i}", datasetArn=dataset, roleArn=ROLE,
                                              dataSource={"dataLocation": probe})
        assert caught.value.response["Error"]["Code"] == "InvalidInputException", probe
        assert "secret" not in caught.value.response["Error"]["Message"].replace("secret.csv", "")
    with pytest.raises(botocore.exceptions.ClientError):
        control.create_dataset_export_job(jobName="escape", datasetArn=dataset, roleArn=ROLE,
                                          jobOutput={"s3DataDestination": {"path": f"s3://{bucket}/private/"}})
    assert [o["Key"] for o in s3_service.client().list_objects_v2(
        Bucket=bucket, Prefix="private/")["Contents"]] == ["private/secret.csv"]


def test_a_missing_object_fails_the_job_with_a_reason(server: Server, dataset: str, bucket: str) -> None:
    job = import_job(server, dataset, f"s3://{bucket}/allowed/nothing-here.csv", "missing")
    assert job["status"] == "CREATE FAILED"
    assert f"s3://{bucket}/allowed/nothing-here.csv" in job["failureReason"]


def personalize(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    return subprocess.run([sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_the_import_command_uploads_for_a_server_that_cannot_see_its_files(
        server: Server, s3_service: S3Service, bucket: str, tmp_path: Any) -> None:
    items = tmp_path / "items.csv"
    items.write_text("ITEM_ID,GENRE\nup1,Comedy\nup2,Drama\n")
    remote = personalize("import", "remote", "--endpoint", "http://personalize.invalid:8080",
                         "--items", str(items), env=s3_service.env)
    assert remote.returncode == 2
    assert "cannot read this machine's files" in remote.stderr and "--upload-to" in remote.stderr

    run = personalize("import", "uploaded", "--endpoint", server.url, "--items", str(items),
                      "--upload-to", f"s3://{bucket}/allowed/uploads", env=s3_service.env)
    assert run.returncode == 0, run.stderr
    assert f"from s3://{bucket}/allowed/uploads/uploaded-items-" in run.stderr
    uploaded = s3_service.client().list_objects_v2(Bucket=bucket, Prefix="allowed/uploads/")["Contents"]
    assert [o["Key"].rsplit("/", 1)[1] for o in uploaded] == ["items.csv"]


def test_a_batch_inference_job_reads_and_writes_the_bucket(
        server: Server, s3_service: S3Service, bucket: str, tmp_path: Any) -> None:
    """Users in an object, recommendations in `<path>/<input name>.out`; a path outside the roots
    is refused when the job is created."""
    control = server.client("personalize")
    group = control.create_dataset_group(name="s3-batch")["datasetGroupArn"]
    schema = control.create_schema(name="s3-batch-clicks", schema=json.dumps({
        "type": "record", "name": "Interactions", "namespace": "com.amazonaws.personalize.schema", "fields": [
            {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
            {"name": "TIMESTAMP", "type": "long"}], "version": "1.0"}))["schemaArn"]
    clicks = control.create_dataset(name="s3-batch-clicks", schemaArn=schema, datasetGroupArn=group,
                                    datasetType="INTERACTIONS")["datasetArn"]
    rows = "".join(f"u{u},i{i},{1_700_000_000 + u * 10 + i}\n" for u in range(300) for i in range(u % 7 + 1))
    s3_service.client().put_object(Bucket=bucket, Key="allowed/clicks.csv",
                                   Body=("USER_ID,ITEM_ID,TIMESTAMP\n" + rows).encode())
    assert import_job(server, clicks, f"s3://{bucket}/allowed/clicks.csv", "clicks")["status"] == "ACTIVE"
    solution = control.create_solution(name="s3-popular", datasetGroupArn=group,
                                       recipeArn="arn:aws:personalize:::recipe/aws-popularity-count")["solutionArn"]
    arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    assert finished(lambda: control.describe_solution_version(solutionVersionArn=arn),
                    "solutionVersion")["status"] == "ACTIVE"

    s3_service.client().put_object(Bucket=bucket, Key="allowed/batch/users.json",
                                   Body=b'{"userId": "u1"}\n{"userId": "u2"}\n{"user": "?"}\n')

    def batch(name: str, output: str) -> str:
        return control.create_batch_inference_job(
            jobName=name, solutionVersionArn=arn, roleArn=ROLE, numResults=3,
            jobInput={"s3DataSource": {"path": f"s3://{bucket}/allowed/batch/users.json"}},
            jobOutput={"s3DataDestination": {"path": output}})["batchInferenceJobArn"]

    job = batch("s3-batch", f"s3://{bucket}/allowed/batch/out/")
    assert finished(lambda: control.describe_batch_inference_job(batchInferenceJobArn=job),
                    "batchInferenceJob")["status"] == "ACTIVE"
    lines = [json.loads(x) for x in read(s3_service, bucket, "allowed/batch/out/users.json.out").splitlines()]
    assert [x["output"]["recommendedItems"] for x in lines[:2]] == [["i0", "i1", "i2"]] * 2
    assert lines[2]["output"] is None and "userId" in lines[2]["error"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        batch("elsewhere", f"s3://{bucket}/not-allowed/")
    assert refused.value.response["Error"]["Code"] == "InvalidInputException"
