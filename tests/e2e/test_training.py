"""Training through boto3's `personalize` client: solutions, versions, metrics, on real data."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import DATASETS, ROOT, Server, free_port

ROLE = "arn:aws:iam::000000000000:role/personalize"
RECIPE = "arn:aws:personalize:::recipe/"
INTERACTIONS = json.dumps({"type": "record", "name": "Interactions", "fields": [
    {"name": "USER_ID", "type": "string"}, {"name": "ITEM_ID", "type": "string"},
    {"name": "TIMESTAMP", "type": "long"}, {"name": "EVENT_TYPE", "type": "string"},
    {"name": "EVENT_VALUE", "type": ["null", "float"]}]})


def wait(describe: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (body := describe())["status"] not in ("ACTIVE", "CREATE FAILED", "CREATE STOPPED"):
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    return body


def slice_of_ml100k(to: Path, rows: int) -> Path:
    """The first `rows` ratings of ml-100k (whole users, in file order)."""
    with open(DATASETS / "ml-100k" / "interactions.csv") as f:
        lines = [next(f) for _ in range(rows + 1)]
    to.write_text("".join(lines))
    return to


def dataset_group(control: Any, name: str, csv: Path) -> str:
    group = control.create_dataset_group(name=name)["datasetGroupArn"]
    import_dataset(control, group, f"{name}-interactions", "INTERACTIONS", INTERACTIONS, csv)
    return group


def import_dataset(control: Any, group: str, name: str, kind: str, schema: str, csv: Path) -> None:
    """Schema, dataset and an import job of `csv`, waited for."""
    schema_arn = control.create_schema(name=name, schema=schema)["schemaArn"]
    dataset = control.create_dataset(name=name, schemaArn=schema_arn, datasetGroupArn=group,
                                     datasetType=kind)["datasetArn"]
    job = control.create_dataset_import_job(jobName=name, datasetArn=dataset, roleArn=ROLE,
                                            dataSource={"dataLocation": str(csv)})["datasetImportJobArn"]
    assert wait(lambda: control.describe_dataset_import_job(
        datasetImportJobArn=job)["datasetImportJob"])["status"] == "ACTIVE"


def train(control: Any, solution: str, mode: str = "FULL") -> dict[str, Any]:
    arn = control.create_solution_version(solutionArn=solution, trainingMode=mode)["solutionVersionArn"]
    return wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"])


@pytest.fixture
def control(embedded_server: Server) -> Any:
    return embedded_server.client("personalize")


def test_recipes_are_listed_and_described(control: Any) -> None:
    recipes = {r["name"] for r in control.list_recipes()["recipes"]}
    assert {"aws-hrnn", "aws-user-personalization", "aws-popularity-count", "aws-sims",
            "aws-personalized-ranking"} <= recipes
    sims = control.describe_recipe(recipeArn=RECIPE + "aws-sims")["recipe"]
    assert sims["recipeType"] == "RELATED_ITEMS" and sims["status"] == "ACTIVE"
    with pytest.raises(control.exceptions.ResourceNotFoundException):
        control.describe_recipe(recipeArn=RECIPE + "aws-nope")


@pytest.mark.parametrize("recipe", ["aws-popularity-count", "aws-sims"])
def test_a_solution_version_trains_and_reports_metrics(control: Any, tmp_path: Path, recipe: str) -> None:
    group = dataset_group(control, "movies", slice_of_ml100k(tmp_path / "ml.csv", 20_000))
    solution = control.create_solution(name=f"movies-{recipe}", datasetGroupArn=group,
                                       recipeArn=RECIPE + recipe)["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    assert version["trainingMode"] == "FULL" and version["trainingHours"] > 0
    metrics = control.get_solution_metrics(solutionVersionArn=version["solutionVersionArn"])["metrics"]
    for name in ("coverage", "mean_reciprocal_rank_at_25", "normalized_discounted_cumulative_gain_at_5",
                 "normalized_discounted_cumulative_gain_at_10", "normalized_discounted_cumulative_gain_at_25",
                 "precision_at_5", "precision_at_10", "precision_at_25"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["normalized_discounted_cumulative_gain_at_25"] > 0  # it found something
    described = control.describe_solution(solutionArn=solution)["solution"]
    assert described["latestSolutionVersion"]["solutionVersionArn"] == version["solutionVersionArn"]
    listed = control.list_solution_versions(solutionArn=solution)["solutionVersions"]
    assert [v["status"] for v in listed] == ["ACTIVE"]


def test_bad_solution_requests_fail_with_clear_errors(control: Any, tmp_path: Path) -> None:
    errors = control.exceptions
    group = dataset_group(control, "small", slice_of_ml100k(tmp_path / "small.csv", 400))
    with pytest.raises(errors.InvalidInputException, match="aws-nope"):
        control.create_solution(name="s", datasetGroupArn=group, recipeArn=RECIPE + "aws-nope")
    with pytest.raises(errors.InvalidInputException, match="hidden_dimension"):
        control.create_solution(name="s", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
                                solutionConfig={"algorithmHyperParameters": {"hidden_dimension": "many"}})
    with pytest.raises(errors.InvalidInputException, match="not one of aws-sims's"):
        control.create_solution(name="s", datasetGroupArn=group, recipeArn=RECIPE + "aws-sims",
                                solutionConfig={"algorithmHyperParameters": {"bptt": "3"}})
    with pytest.raises(errors.InvalidInputException, match="schedulingExpression"):
        control.create_solution(name="s", datasetGroupArn=group, recipeArn=RECIPE + "aws-sims",
                                performAutoTraining=True,
                                solutionConfig={"autoTrainingConfig": {"schedulingExpression": "weekly"}})
    assert control.list_solutions(datasetGroupArn=group)["solutions"] == []

    solution = control.create_solution(name="small-pop", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    with pytest.raises(errors.ResourceAlreadyExistsException):
        control.create_solution(name="small-pop", datasetGroupArn=group,
                                recipeArn=RECIPE + "aws-popularity-count")
    hrnn = control.create_solution(name="small-hrnn", datasetGroupArn=group,
                                   recipeArn=RECIPE + "aws-hrnn")["solutionArn"]
    with pytest.raises(errors.InvalidInputException, match="create a FULL one first"):
        control.create_solution_version(solutionArn=hrnn, trainingMode="UPDATE")
    failed = train(control, solution)
    assert failed["status"] == "CREATE FAILED"
    assert failed["failureReason"] == "needs at least 1000 interactions after filtering, found 400"
    with pytest.raises(errors.ResourceInUseException, match="ACTIVE"):
        control.get_solution_metrics(solutionVersionArn=failed["solutionVersionArn"])

    filtered = control.create_solution(name="small-clicks", datasetGroupArn=group, eventType="click",
                                       recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
    assert "of event type 'click' after filtering, found 0" in train(control, filtered)["failureReason"]

    with pytest.raises(errors.InvalidInputException, match="UPDATE is not available"):
        control.create_solution_version(solutionArn=solution, trainingMode="UPDATE")


def test_automatic_training_starts_a_full_version_at_once(control: Any, tmp_path: Path) -> None:
    group = dataset_group(control, "auto", slice_of_ml100k(tmp_path / "ml.csv", 3_000))
    solution = control.create_solution(
        name="auto-pop", datasetGroupArn=group, recipeArn=RECIPE + "aws-popularity-count",
        performAutoTraining=True,
        solutionConfig={"autoTrainingConfig": {"schedulingExpression": "rate(1 day)"}})["solutionArn"]
    deadline = time.monotonic() + 30
    while not (versions := control.list_solution_versions(solutionArn=solution)["solutionVersions"]):
        assert time.monotonic() < deadline, "no automatic version"
        time.sleep(0.2)
    assert versions[0]["trainingType"] == "AUTOMATIC" and versions[0]["trainingMode"] == "FULL"
    done = wait(lambda: control.describe_solution_version(
        solutionVersionArn=versions[0]["solutionVersionArn"])["solutionVersion"])
    assert done["status"] == "ACTIVE", done.get("failureReason")


def test_a_trainer_process_trains_what_the_api_only_stores(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"OPZ_TRAIN_IN_SERVER": "false"}).start()
    trainer = None
    try:
        control = server.client("personalize")
        group = dataset_group(control, "split", slice_of_ml100k(tmp_path / "ml.csv", 3_000))
        solution = control.create_solution(name="split-pop", datasetGroupArn=group,
                                           recipeArn=RECIPE + "aws-popularity-count")["solutionArn"]
        arn = control.create_solution_version(solutionArn=solution)["solutionVersionArn"]
        time.sleep(2)
        assert control.describe_solution_version(
            solutionVersionArn=arn)["solutionVersion"]["status"] == "CREATE PENDING"
        port = free_port()
        trainer = subprocess.Popen([sys.executable, "-m", "serving.cli", "trainer", "--data-dir",
                                    str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env={**server.env, "OPZ_METRICS_PORT": str(port)})
        done = wait(lambda: control.describe_solution_version(solutionVersionArn=arn)["solutionVersion"], 60)
        assert done["status"] == "ACTIVE", done.get("failureReason")
        # each process counts the jobs it ran: the trainer the training, the API the import
        ended = 'opz_jobs_finished_total{kind="%s",outcome="succeeded"} 1.0'
        assert ended % "solution-version" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
        api = httpx.get(server.url + "/metrics").text
        assert ended % "dataset-import-job" in api and ended % "solution-version" not in api
        # and its /health there: the control store answers it (the containers' health check)
        check = [sys.executable, str(ROOT / "scripts" / "healthcheck.py"), "trainer"]
        assert subprocess.run(check, env={**server.env, "OPZ_METRICS_PORT": str(port)}).returncode == 0
    finally:
        if trainer is not None:
            trainer.terminate()
            assert trainer.wait(20) == 0, trainer.stdout.read() if trainer.stdout else ""
        server.stop()


def test_the_report_compares_a_version_with_popularity(embedded_server: Server, tmp_path: Path) -> None:
    control = embedded_server.client("personalize")
    group = dataset_group(control, "rep", slice_of_ml100k(tmp_path / "ml.csv", 5_000))
    solution = control.create_solution(name="rep-sims", datasetGroupArn=group,
                                       recipeArn=RECIPE + "aws-sims")["solutionArn"]
    version = train(control, solution)
    out = tmp_path / "report.html"
    run = subprocess.run([sys.executable, "-m", "serving.cli", "solution-version", "report",
                          version["solutionVersionArn"], "--endpoint", embedded_server.url,
                          "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    page = out.read_text()
    assert "<svg" in page and "popularity (same split)" in page and "aws-sims" in page
    assert "lift over popularity" in page and " held-out interactions of " in page
    ndcg = control.get_solution_metrics(solutionVersionArn=version["solutionVersionArn"])["metrics"][
        "normalized_discounted_cumulative_gain_at_10"]
    assert f"{ndcg:.4f}" in page
