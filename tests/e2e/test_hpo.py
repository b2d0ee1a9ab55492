"""Hyperparameter optimisation and AutoML through unchanged boto3: performHPO with an hpoConfig
searches, the version trains with the best trial's hyperparameters, tunedHPOParams says which,
and the solution version report lists every trial; performAutoML trains the recipe that scores
best on a validation split, and autoMLResult names it."""
from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from support import ROOT, Server
from test_training import RECIPE, dataset_group, slice_of_ml100k, train

HPO = {"hpoObjective": {"type": "Maximize", "metricName": "normalized_discounted_cumulative_gain_at_10"},
       "hpoResourceConfig": {"maxNumberOfTrainingJobs": "3", "maxParallelTrainingJobs": "1"},
       "algorithmHyperParameterRanges": {
           "integerHyperParameterRanges": [{"name": "hidden_dimension", "minValue": 32, "maxValue": 48}],
           "continuousHyperParameterRanges": [
               {"name": "learning_rate", "minValue": 0.005, "maxValue": 0.05}]}}


def stored(server: Server, arn: str) -> dict[str, Any]:
    """The version as the control plane keeps it (boto3 keeps only Personalize's members)."""
    return httpx.post(server.url, json={"solutionVersionArn": arn}, headers={
        "X-Amz-Target": "AmazonPersonalize.DescribeSolutionVersion",
        "Content-Type": "application/x-amz-json-1.1"}).json()["solutionVersion"]


def test_a_search_trains_the_version_with_its_best_trial(embedded_server: Server, tmp_path: Any) -> None:
    control = embedded_server.client("personalize")
    group = dataset_group(control, "hpo", slice_of_ml100k(tmp_path / "ml.csv", 5000))
    solution = control.create_solution(
        name="searched", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn", performHPO=True,
        solutionConfig={"hpoConfig": HPO, "algorithmHyperParameters": {"epochs": "1"}})["solutionArn"]
    assert control.describe_solution(solutionArn=solution)["solution"]["performHPO"] is True
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")

    trials = stored(embedded_server, version["solutionVersionArn"])["hpoTrials"]
    assert len(trials) == 3 and sum(bool(t.get("best")) for t in trials) == 1
    best = next(t for t in trials if t.get("best"))
    assert best["value"] == max(t["value"] for t in trials)
    for t in trials:
        assert 32 <= int(t["hyperparameters"]["hidden_dimension"]) <= 48
        assert 0.005 <= float(t["hyperparameters"]["learning_rate"]) <= 0.05
    tuned = version["tunedHPOParams"]["algorithmHyperParameters"]
    assert tuned["hidden_dimension"] == best["hyperparameters"]["hidden_dimension"]
    assert float(tuned["learning_rate"]) == pytest.approx(float(best["hyperparameters"]["learning_rate"]))

    report = tmp_path / "report.html"
    command = ["solution-version", "report", version["solutionVersionArn"], "--endpoint", embedded_server.url,
               "--out", str(report)]
    done = subprocess.run([sys.executable, "-m", "serving.cli", *command], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Hyperparameter search" in report.read_text() and "(best)" in report.read_text()


@pytest.mark.parametrize("hpo, why", [
    ({"algorithmHyperParameterRanges": {"integerHyperParameterRanges": [
        {"name": "max_user_history_length", "minValue": 10, "maxValue": 20}]}}, "not a tunable"),
    ({"hpoObjective": {"metricName": "accuracy"}}, "metricName"),
    ({"hpoResourceConfig": {"maxNumberOfTrainingJobs": "51"}}, "maxNumberOfTrainingJobs"),
])
def test_a_search_personalize_would_refuse_is_refused(embedded_server: Server, hpo: dict[str, Any],
                                                      why: str) -> None:
    control = embedded_server.client("personalize")
    group = control.create_dataset_group(name="hpo-refused")["datasetGroupArn"]
    with pytest.raises(control.exceptions.InvalidInputException, match=why):
        control.create_solution(name="refused", datasetGroupArn=group, recipeArn=RECIPE + "aws-hrnn",
                                performHPO=True, solutionConfig={"hpoConfig": hpo})


def test_automl_trains_the_recipe_that_scores_best(embedded_server: Server, tmp_path: Any) -> None:
    control = embedded_server.client("personalize")
    group = dataset_group(control, "automl", slice_of_ml100k(tmp_path / "ml.csv", 5000))
    candidates = [RECIPE + "aws-popularity-count", RECIPE + "aws-hrnn"]
    automl = {"autoMLConfig": {"metricName": "precision_at_25", "recipeList": candidates}}
    solution = control.create_solution(name="chosen", datasetGroupArn=group, performAutoML=True,
                                       solutionConfig=automl)["solutionArn"]
    version = train(control, solution)
    assert version["status"] == "ACTIVE", version.get("failureReason")
    tried = stored(embedded_server, version["solutionVersionArn"])["autoMLTrials"]
    assert [t["recipeArn"] for t in tried] == candidates
    winner = max(tried, key=lambda t: t["value"])["recipeArn"]
    assert version["recipeArn"] == winner
    described = control.describe_solution(solutionArn=solution)["solution"]
    assert described["autoMLResult"] == {"bestRecipeArn": winner}
    campaign = control.create_campaign(name="chosen", solutionVersionArn=version["solutionVersionArn"])
    items = embedded_server.client("personalize-runtime").get_recommendations(
        campaignArn=campaign["campaignArn"], userId="1", numResults=5)["itemList"]
    assert len(items) == 5

    for refused, why in (({"recipeArn": candidates[1]}, "recipeArn"),
                         ({"solutionConfig": {"autoMLConfig": {"recipeList": [RECIPE + "aws-sims"]}}},
                          "recipeList"),
                         ({"performHPO": True}, "performHPO")):
        with pytest.raises(control.exceptions.InvalidInputException, match=why):
            control.create_solution(name="refused", datasetGroupArn=group, performAutoML=True, **refused)
