"""With OPZ_DATABASE_URL the control plane lives in PostgreSQL: two servers with data dirs of
their own (two hosts without a shared disk) see the same resources and the same access keys,
and `personalize keys` run from a third place manages them for both."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import botocore.exceptions
import pytest
from support import Server, two_hosts

ACCOUNT = "222222222222"


@pytest.fixture
def servers(tmp_path: Path, fresh_database: str) -> Iterator[tuple[Server, Server]]:
    env = {"OPZ_DATABASE_URL": fresh_database}
    (tmp_path / "operator").mkdir()
    with two_hosts(tmp_path, env) as both:
        yield both


def test_servers_without_a_shared_disk_share_resources_and_keys(servers: tuple[Server, Server],
                                                                tmp_path: Path) -> None:
    first, second = servers
    assert "control plane in PostgreSQL" in first.output()
    group = first.client("personalize").create_dataset_group(name="shop")["datasetGroupArn"]
    assert second.client("personalize").describe_dataset_group(datasetGroupArn=group)[
        "datasetGroup"]["name"] == "shop"
    with pytest.raises(botocore.exceptions.ClientError, match="ResourceAlreadyExists"):
        second.client("personalize").create_dataset_group(name="shop")
    assert not (tmp_path / "a" / "data" / "control.db").exists()

    operator = Server(tmp_path / "operator" / "data", env=first.env)  # not started: its CLI only
    key = operator.create_key(ACCOUNT)
    for server in servers:
        assert key["accessKeyId"] in server.keys("list").stdout
    time.sleep(5.5)  # keys are looked up at most 5 s old
    for server in servers:
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            server.client("personalize").list_dataset_groups()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    made = first.client("personalize", key).create_dataset_group(name="signed")["datasetGroupArn"]
    assert f":{ACCOUNT}:dataset-group/signed" in made
    listed = second.client("personalize", key).list_dataset_groups()["datasetGroups"]
    assert [g["datasetGroupArn"] for g in listed] == [made], "the key's account sees its own"

    deleted = second.keys("delete", key["accessKeyId"], "--last")
    assert deleted.returncode == 0, deleted.stderr
    assert operator.keys("list").stdout.strip() == ""
    time.sleep(5.5)
    assert first.client("personalize").list_dataset_groups()["datasetGroups"]  # unsigned again
