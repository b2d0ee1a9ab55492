"""`personalize import`: bulk-load CSV files into a running server, for humans.

It does what a boto3 user would do by hand (create the dataset group, a schema inferred
from each file, the dataset, an import job) through the same control-plane API, skipping
whatever already exists, then waits for each job with a progress bar on stderr.

A server on this machine reads the files where they are. A remote one cannot see this
machine's disk, so the files go to S3 first (`--upload-to s3://bucket/prefix`, with this
machine's AWS credentials and `AWS_ENDPOINT_URL_S3` for an S3-compatible store), as a
Personalize user uploads them, and the job reads them from there.
"""
from __future__ import annotations

import csv
import ipaddress
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

from kernel.dataset_schema import SchemaError, infer_schema

SAMPLE_ROWS = 10_000


class ApiError(Exception):
    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


class Control:
    """The JSON 1.1 control plane, signed as the AWS CLI signs it: with the credentials and
    region of the standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...);
    unsigned when there are none, for a server without access keys."""

    def __init__(self, endpoint: str) -> None:
        import botocore.session

        self.endpoint = endpoint.rstrip("/") + "/"
        session = botocore.session.get_session()
        chain = session.get_component("credential_provider")
        for remote in ("iam-role", "container-role"):  # our keys are never an instance's IAM role
            chain.remove(remote)
        self.credentials = session.get_credentials()
        self.region = session.get_config_variable("region") or "us-east-1"

    def __call__(self, operation: str, **body: Any) -> dict[str, Any]:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint, data=data, method="POST", headers=self.signed(data, {
            "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"AmazonPersonalize.{operation}"}))
        return _answer(req, timeout=30)

    def get(self, path: str, **query: str) -> dict[str, Any]:
        """A signed GET of one of the server's own reads (the console's, under /console/api/)."""
        url = f"{self.endpoint}{path.lstrip('/')}?{urllib.parse.urlencode(query)}"
        return _answer(urllib.request.Request(url, headers=self.signed(b"", {}, method="GET", url=url)),
                       timeout=300)

    def signed(self, data: bytes, headers: dict[str, str], method: str = "POST",
               url: str | None = None) -> dict[str, str]:
        if self.credentials is None:
            return headers
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method, url or self.endpoint, data=data, headers=headers)
        SigV4Auth(self.credentials.get_frozen_credentials(), "personalize", self.region).add_auth(request)
        return dict(request.headers.items())

    def exists(self, operation: str, **body: Any) -> bool:
        try:
            self(operation, **body)
            return True
        except ApiError as exc:
            if exc.type_name == "ResourceNotFoundException":
                return False
            raise


def _answer(req: urllib.request.Request, timeout: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        err = json.loads(exc.read() or b"{}")
        raise ApiError(err.get("__type", f"HTTP {exc.code}"), err.get("message", "")) from None


def csv_files(path: Path) -> list[Path]:
    """A file, or every .csv of a folder (what the import job reads too)."""
    return sorted(p for p in path.glob("*.csv")) if path.is_dir() else [path]


def count_rows(path: Path) -> int:
    """Lines after the headers: the progress bar's 100% (quoted newlines make it an estimate)."""
    total = 0
    for file in csv_files(path):
        with open(file, "rb") as f:
            data_lines = -1
            last = b"\n"
            for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - f is this loop's file
                data_lines += chunk.count(b"\n")
                last = chunk[-1:]
        total += max(0, data_lines + (last != b"\n"))
    return total


def sample(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(csv_files(path)[0], newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        return header, [row for _, row in zip(range(SAMPLE_ROWS), reader, strict=False)]


def ensure_dataset(control: Control, group_arn: str, dataset_type: str, schema: str, out: TextIO) -> str:
    """The group's dataset of `dataset_type`, made (with `schema`, inferred from the file) if missing."""
    name = group_arn.rsplit("/", 1)[1]
    dataset_arn = group_arn.replace(":dataset-group/", ":dataset/") + f"/{dataset_type}"
    if control.exists("DescribeDataset", datasetArn=dataset_arn):
        return dataset_arn
    schema_name = f"{name}-{dataset_type.lower()}"
    schema_arn = group_arn.replace(f":dataset-group/{name}", f":schema/{schema_name}")
    if not control.exists("DescribeSchema", schemaArn=schema_arn):
        control("CreateSchema", name=schema_name, schema=schema)
        out.write(f"created schema {schema_name}: {schema}\n")
    control("CreateDataset", name=schema_name, schemaArn=schema_arn, datasetGroupArn=group_arn,
            datasetType=dataset_type)
    out.write(f"created dataset {dataset_arn}\n")
    return dataset_arn


def bar(done: int, total: int, elapsed: float, width: int = 30) -> str:
    frac = min(1.0, done / total) if total else 0.0
    filled = int(frac * width)
    return (f"\r  [{'#' * filled}{'.' * (width - filled)}] {frac:4.0%} {done:,}/{total:,} rows "
            f"{elapsed:5.1f} s")


def wait(control: Control, job_arn: str, total: int, out: TextIO, poll_s: float = 0.2) -> dict[str, Any]:
    start = time.monotonic()
    while True:
        job = control("DescribeDatasetImportJob", datasetImportJobArn=job_arn)["datasetImportJob"]
        done = job.get("progress", {}).get("rowsDone", 0)
        out.write(bar(done, total, time.monotonic() - start))
        out.flush()
        if job["status"] in ("ACTIVE", "CREATE FAILED"):
            out.write("\n")
            return job
        time.sleep(poll_s)


def find_group(control: Control, name: str) -> str | None:
    page: dict[str, Any] = {}
    while True:
        resp = control("ListDatasetGroups", **page)
        for group in resp["datasetGroups"]:
            if group["name"] == name:
                return group["datasetGroupArn"]
        if "nextToken" not in resp:
            return None
        page = {"nextToken": resp["nextToken"]}


def on_this_machine(endpoint: str) -> bool:
    host = urlparse(endpoint).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def upload(path: Path, prefix: str, job_name: str) -> str:
    """Each CSV of `path` under `<prefix>/<job name>/`; returns that folder's s3:// URL."""
    import boto3

    bucket, _, key = prefix.removeprefix("s3://").partition("/")
    folder = f"{key.strip('/')}/{job_name}/".lstrip("/")
    s3 = boto3.client("s3")
    try:
        for file in csv_files(path):
            s3.upload_file(str(file), bucket, folder + file.name)
    except Exception as exc:  # noqa: BLE001 - no credentials, no bucket, no endpoint: all said the same way
        raise ApiError(f"upload to {prefix}", f"{type(exc).__name__}: {exc}") from None
    return f"s3://{bucket}/{folder}"


def run(endpoint: str, dataset_group: str, files: dict[str, Path], mode: str,
        out: TextIO = sys.stderr, upload_to: str | None = None) -> int:
    """Import each file into its dataset of `dataset_group`; 0 when every job is ACTIVE."""
    if upload_to is None and not on_this_machine(endpoint):
        out.write(f"error: the server at {endpoint} cannot read this machine's files: upload them "
                  "with --upload-to s3://bucket/prefix (under the server's OPZ_S3_ROOTS)\n")
        return 2
    if unreadable := next((p for p in files.values() if not p.is_file() or not os.access(p, os.R_OK)), None):
        out.write(f"error: cannot read {unreadable}: no such file, or not readable\n")
        return 2
    schemas = {}
    for dataset_type, path in files.items():  # every file checked before anything is created
        try:
            schemas[dataset_type] = infer_schema(dataset_type, *sample(path))
        except SchemaError as exc:
            out.write(f"error: {path} cannot be an {dataset_type} dataset: {exc}\n")
            return 2
    control = Control(endpoint)
    try:
        group_arn = find_group(control, dataset_group)
        if group_arn is None:
            group_arn = control("CreateDatasetGroup", name=dataset_group)["datasetGroupArn"]
            out.write(f"created dataset group {group_arn}\n")
        for dataset_type, path in files.items():
            dataset_arn = ensure_dataset(control, group_arn, dataset_type, schemas[dataset_type], out)
            job_name = f"{dataset_group[:28]}-{dataset_type.lower()}-{time.strftime('%Y%m%d-%H%M%S')}-" \
                       f"{uuid.uuid4().hex[:6]}"
            location = upload(path, upload_to, job_name) if upload_to else path.resolve().as_uri()
            job_arn = control("CreateDatasetImportJob", jobName=job_name, datasetArn=dataset_arn,
                              dataSource={"dataLocation": location}, importMode=mode)["datasetImportJobArn"]
            out.write(f"importing {path} into {dataset_type} ({mode}) from {location}\n")
            job = wait(control, job_arn, count_rows(path), out)
            if job["status"] != "ACTIVE":
                out.write(f"import failed: {job.get('failureReason')}\n")
                return 1
    except ApiError as exc:
        out.write(f"error: {exc}\n")
        return 1
    except urllib.error.URLError as exc:
        out.write(no_server(endpoint, exc))
        return 1
    return 0


def no_server(endpoint: str, exc: urllib.error.URLError) -> str:
    """The one line a client command prints when nothing answers at `endpoint`."""
    return f"error: no server at {endpoint} ({exc.reason}); start one with `personalize serve`\n"
