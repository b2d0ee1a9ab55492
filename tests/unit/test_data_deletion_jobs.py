"""Data deletion jobs' rules: the input file, Personalize's statuses and limits, and what blocks
DeleteDatasetGroup (the control plane's handlers, with no job runner: jobs stay PENDING)."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from kernel.settings import Settings
from serving.control.base import Ctx
from serving.control.dispatch import dispatch
from serving.control.sqlite_store import ResourceStore
from serving.errors import InvalidInputException, LimitExceededException, ResourceInUseException
from serving.jobs import ACTIVE, FAILED, RUNNING
from training.importer import MAX_DELETION_BYTES, DatasetFiles, ImportFailed, user_ids

ROLE = "arn:aws:iam::000000000000:role/personalize"
GROUP = "arn:aws:personalize:us-east-1:000000000000:dataset-group/shop"


def csv(tmp_path: Path, text: str, name: str = "gone.csv") -> Path:
    (path := tmp_path / name).write_text(text)
    return path


def test_the_users_to_delete_are_read_once_each_in_order(tmp_path: Path) -> None:
    assert user_ids([csv(tmp_path, "USER_ID\nu2\nu1\n\"u,3\"\nu2\n")]) == ["u2", "u1", "u,3"]
    files = [csv(tmp_path, "\ufeffUSER_ID\r\nu1\r\n", "bom.csv"), csv(tmp_path, "USER_ID\nu9\n", "b.csv")]
    assert user_ids(files) == ["u1", "u9"]


@pytest.mark.parametrize("text, problem", [
    ("ITEM_ID\ni1\n", "header column 'ITEM_ID' is not a field of the schema (USER_ID)"),
    ("USER_ID,AGE\nu1,3\n", "header column 'AGE' is not a field"),
    ("USER_ID\nu1\n\nu2\n", None),  # a blank line is no row
    ("USER_ID\nu1\n\"\"\n", "row 2 (line 3 of gone.csv), column USER_ID: is empty but the field is required"),
    ("USER_ID\n" + "x" * 257 + "\n", "is longer than 256 characters"),
    ("USER_ID\n", "has a header but no user ids"),
    ("", "gone.csv is empty"),
])
def test_a_bad_input_file_fails_the_job_naming_the_problem(tmp_path: Path, text: str,
                                                            problem: str | None) -> None:
    if problem is None:
        assert user_ids([csv(tmp_path, text)]) == ["u1", "u2"]
        return
    with pytest.raises(ImportFailed, match=problem.replace("(", r"\(").replace(")", r"\)")):
        user_ids([csv(tmp_path, text)])


def test_an_input_over_personalizes_size_limit_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with open(big, "w") as f:
        f.write("USER_ID\n")
        f.truncate(MAX_DELETION_BYTES + 1)
    with pytest.raises(ImportFailed, match="at most 104,857,600"):
        user_ids([big])


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[Ctx]:
    settings = Settings(data_dir=tmp_path / "data", file_roots=str(tmp_path))
    resources = ResourceStore(tmp_path / "control.db")
    yield Ctx(settings=settings, resources=resources, datasets=DatasetFiles.of(settings))
    resources.close()


def call(ctx: Ctx, op: str, **body: Any) -> dict[str, Any]:
    answer = dispatch(f"AmazonPersonalize.{op}", orjson.dumps(body), ctx)
    return asyncio.run(answer) if asyncio.iscoroutine(answer) else answer  # type: ignore[return-value]


def create_job(ctx: Ctx, name: str, location: str) -> str:
    return call(ctx, "CreateDataDeletionJob", jobName=name, datasetGroupArn=GROUP, roleArn=ROLE,
                dataSource={"dataLocation": location})["dataDeletionJobArn"]


def test_jobs_show_personalizes_statuses_newest_first(ctx: Ctx, tmp_path: Path) -> None:
    call(ctx, "CreateDatasetGroup", name="shop")
    location = str(csv(tmp_path, "USER_ID\nu1\n"))
    arns = [create_job(ctx, f"job{n}", location) for n in range(4)]
    for arn, status in zip(arns[1:], (RUNNING, ACTIVE, FAILED), strict=True):
        ctx.resources.update(arn, {"status": status})
    listed = call(ctx, "ListDataDeletionJobs", datasetGroupArn=GROUP)["dataDeletionJobs"]
    assert [(j["jobName"], j["status"]) for j in listed] == [
        ("job3", "FAILED"), ("job2", "COMPLETED"), ("job1", "IN_PROGRESS"), ("job0", "PENDING")]
    job = call(ctx, "DescribeDataDeletionJob", dataDeletionJobArn=arns[0])["dataDeletionJob"]
    times = {k: job[k] for k in ("creationDateTime", "lastUpdatedDateTime")}
    assert job == {"jobName": "job0", "dataDeletionJobArn": arns[0], "datasetGroupArn": GROUP,
                   "dataSource": {"dataLocation": location}, "roleArn": ROLE, "status": "PENDING", **times}
    page = call(ctx, "ListDataDeletionJobs", maxResults=3)
    assert len(page["dataDeletionJobs"]) == 3 and "nextToken" in page


def test_a_dataset_group_takes_five_pending_jobs_and_is_not_deleted_under_one(ctx: Ctx,
                                                                              tmp_path: Path) -> None:
    call(ctx, "CreateDatasetGroup", name="shop")
    location = str(csv(tmp_path, "USER_ID\nu1\n"))
    arns = [create_job(ctx, f"job{n}", location) for n in range(5)]
    with pytest.raises(LimitExceededException, match="5 data deletion jobs PENDING"):
        create_job(ctx, "one-too-many", location)
    with pytest.raises(ResourceInUseException, match="data deletion job in progress"):
        call(ctx, "DeleteDatasetGroup", datasetGroupArn=GROUP)
    for arn in arns:
        ctx.resources.update(arn, {"status": ACTIVE})
    call(ctx, "DeleteDatasetGroup", datasetGroupArn=GROUP)  # finished jobs go with it
    assert ctx.resources.list("data-deletion-job") == []


def test_a_job_on_a_location_outside_the_roots_is_refused_when_created(ctx: Ctx) -> None:
    call(ctx, "CreateDatasetGroup", name="shop")
    with pytest.raises(InvalidInputException, match="dataSource.dataLocation"):
        create_job(ctx, "j", "/etc/passwd")
    with pytest.raises(InvalidInputException, match="dataSource.dataLocation is required"):
        call(ctx, "CreateDataDeletionJob", jobName="j", datasetGroupArn=GROUP, roleArn=ROLE, dataSource={})
