"""`personalize import`: a human loads CSV files into a running server in one command."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import DATASETS, Server

ML100K = DATASETS / "ml-100k"


def personalize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True,
                          timeout=120)


def test_import_creates_what_is_missing_and_shows_progress(embedded_server: Server) -> None:
    run = personalize("import", "ml100k", "--endpoint-url", embedded_server.url,
                      "--interactions", str(ML100K / "interactions.csv"),
                      "--items", str(ML100K / "items.csv"), "--users", str(ML100K / "users.csv"))
    assert run.returncode == 0, run.stderr
    assert "created dataset group" in run.stderr
    assert "100% 100,000/100,000 rows" in run.stderr and "100% 943/943 rows" in run.stderr
    control = embedded_server.client("personalize")
    group = control.list_dataset_groups()["datasetGroups"][0]["datasetGroupArn"]
    datasets = control.list_datasets(datasetGroupArn=group)["datasets"]
    assert sorted(d["datasetType"] for d in datasets) == ["INTERACTIONS", "ITEMS", "USERS"]
    items = control.describe_schema(schemaArn=group.replace("dataset-group/", "schema/") + "-items")
    assert '"categorical": true' in items["schema"]["schema"]  # GENRES is pipe-separated

    again = personalize("import", "ml100k", "--endpoint", embedded_server.url, "--mode", "INCREMENTAL",
                        "--users", str(ML100K / "users.csv"))
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stderr  # everything existed: only a new job
    jobs = control.list_dataset_import_jobs(datasetArn=group.replace("dataset-group/", "dataset/") + "/USERS")
    assert [j["importMode"] for j in jobs["datasetImportJobs"]] == ["FULL", "INCREMENTAL"]


def test_import_reports_a_failed_job_and_a_missing_server(embedded_server: Server, tmp_path: Path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
    assert personalize("import", "shop", "--endpoint", embedded_server.url,
                       "--interactions", str(good)).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,yesterday\n")
    run = personalize("import", "shop", "--endpoint", embedded_server.url, "--interactions", str(bad))
    assert run.returncode == 1
    assert "column TIMESTAMP: 'yesterday' is not a long" in run.stderr
    nobody = personalize("import", "shop", "--endpoint", "http://127.0.0.1:9", "--interactions", str(good))
    assert nobody.returncode == 1 and "no server at http://127.0.0.1:9" in nobody.stderr
    assert personalize("import", "shop").returncode == 2
    missing = personalize("import", "never-made", "--endpoint-url", embedded_server.url,
                          "--interactions", "/nope/x.csv")
    assert missing.returncode == 2 and "cannot read /nope/x.csv" in missing.stderr
    items = tmp_path / "items.csv"
    items.write_text("ITEM_ID,GENRES\n1,Comedy\n2,Drama\n")
    mixed_up = personalize("import", "never-made", "--endpoint-url", embedded_server.url, "--interactions",
                           str(items))
    assert mixed_up.returncode == 2 and mixed_up.stderr == (
        f"error: {items} cannot be an INTERACTIONS dataset: field \"USER_ID\": INTERACTIONS datasets "
        "need a USER_ID field of type string\n")
    groups = embedded_server.client("personalize").list_dataset_groups()["datasetGroups"]
    assert "never-made" not in {g["name"] for g in groups}  # nothing made before the files were checked
    for command in (("solution-version", "wait"), ("solution-version", "report")):
        gone = personalize(*command, "arn:aws:personalize:us-east-1:000000000000:solution/s/1",
                           "--endpoint-url", "http://127.0.0.1:9")
        assert gone.returncode == 1 and "no server at http://127.0.0.1:9" in gone.stderr, command


def test_import_signs_with_the_users_aws_credentials(tmp_path: Path) -> None:
    """Against a server with keys, `personalize import` signs as the AWS CLI does, with the
    credentials of the environment; without any, the server's refusal is what it prints."""
    server = Server(tmp_path / "data")
    key = server.create_key("123456789012")
    server.start()
    try:
        good = tmp_path / "good.csv"
        good.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu1,i1,1700000000\n")
        env = {k: v for k, v in server.env.items() if not k.startswith("AWS_")}
        args = [sys.executable, "-m", "serving.cli", "import", "shop", "--endpoint", server.url,
                "--interactions", str(good)]
        nothing = {"AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                   "AWS_EC2_METADATA_DISABLED": "true"}  # no credentials anywhere, and no network look-up
        anonymous = subprocess.run(args, capture_output=True, text=True, timeout=120, env={**env, **nothing})
        assert anonymous.returncode == 1 and "MissingAuthenticationTokenException" in anonymous.stderr
        signed = subprocess.run(args, capture_output=True, text=True, timeout=120, env={
            **env, "AWS_ACCESS_KEY_ID": key["accessKeyId"], "AWS_SECRET_ACCESS_KEY": key["secretAccessKey"]})
        assert signed.returncode == 0, signed.stderr
        assert ":123456789012:dataset-group/shop" in signed.stderr
    finally:
        server.stop()
