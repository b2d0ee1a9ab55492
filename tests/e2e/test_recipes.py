"""A recipe's algorithm and feature transformation, through unchanged boto3: what DescribeRecipe
names, DescribeAlgorithm and DescribeFeatureTransformation describe, and what they describe is
what CreateSolution takes; the custom recipes that the domains' use cases rest on."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from support import Server
from test_recommenders import INTERACTIONS, NEW_VIDEO, VIDEOS, refused, watches
from test_training import import_dataset, train

RECIPE = "arn:aws:personalize:::recipe/"


@pytest.fixture
def control(embedded_server: Server) -> Any:
    return embedded_server.client("personalize")


def ranges(algorithm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for kind in algorithm["defaultHyperParameterRanges"].values() for r in kind}


def test_every_recipe_names_an_algorithm_and_a_feature_transformation_that_exist(control: Any) -> None:
    for listed in control.list_recipes()["recipes"]:
        recipe = control.describe_recipe(recipeArn=listed["recipeArn"])["recipe"]
        algorithm = control.describe_algorithm(algorithmArn=recipe["algorithmArn"])["algorithm"]
        assert algorithm["algorithmArn"] == recipe["algorithmArn"] and algorithm["name"] == recipe["name"]
        assert algorithm["algorithmImage"]["dockerURI"] and algorithm["trainingInputMode"] == "File"
        assert set(algorithm["defaultHyperParameters"]) == set(ranges(algorithm))
        transformation = control.describe_feature_transformation(
            featureTransformationArn=recipe["featureTransformationArn"])["featureTransformation"]
        assert transformation["featureTransformationArn"] == recipe["featureTransformationArn"]
        assert transformation["status"] == "ACTIVE"
    for call in (lambda: control.describe_algorithm(algorithmArn="arn:aws:personalize:::algorithm/aws-nope"),
                 lambda: control.describe_feature_transformation(
                     featureTransformationArn="arn:aws:personalize:::feature-transformation/nope")):
        with pytest.raises(control.exceptions.ResourceNotFoundException):
            call()


def test_hrnn_says_what_it_tunes_and_create_solution_holds_to_it(control: Any) -> None:
    recipe = control.describe_recipe(recipeArn=RECIPE + "aws-hrnn")["recipe"]
    algorithm = control.describe_algorithm(algorithmArn=recipe["algorithmArn"])["algorithm"]
    hidden = ranges(algorithm)["hidden_dimension"]
    assert algorithm["defaultHyperParameters"]["hidden_dimension"] == "149"
    assert (hidden["minValue"], hidden["maxValue"], hidden["isTunable"]) == (32, 256, True)
    assert ranges(algorithm)["recency_mask"] == {"name": "recency_mask", "values": ["true", "false"],
                                                 "isTunable": True}
    assert ranges(algorithm)["learning_rate"]["isTunable"] is True
    assert ranges(algorithm)["max_user_history_length"]["isTunable"] is False
    resources = algorithm["defaultResourceConfig"]
    assert resources == {"maxNumberOfTrainingJobs": "5", "maxParallelTrainingJobs": "1"}
    transformation = control.describe_feature_transformation(
        featureTransformationArn=recipe["featureTransformationArn"])["featureTransformation"]
    assert transformation["defaultParameters"] == {"min_user_history_length_percentile": "0.0",
                                                   "max_user_history_length_percentile": "0.99"}
    assert not set(transformation["defaultParameters"]) & set(algorithm["defaultHyperParameters"])

    group = control.create_dataset_group(name="tuned")["datasetGroupArn"]

    def solution(name: str, **config: dict[str, str]) -> str:
        return control.create_solution(name=name, datasetGroupArn=group, recipeArn=recipe["recipeArn"],
                                       solutionConfig=config)["solutionArn"]

    solution("widest", algorithmHyperParameters={"hidden_dimension": str(hidden["maxValue"])},
             featureTransformationParameters={"max_user_history_length_percentile": "0.95"})
    with pytest.raises(control.exceptions.InvalidInputException, match="hidden_dimension"):
        solution("too-wide", algorithmHyperParameters={"hidden_dimension": str(hidden["maxValue"] + 1)})
    with pytest.raises(control.exceptions.InvalidInputException, match="featureTransformationParameters"):
        solution("misplaced", featureTransformationParameters={"hidden_dimension": "64"})


def test_trending_and_similar_items_are_custom_recipes_too(embedded_server: Server, tmp_path: Path) -> None:
    """A custom dataset group trains aws-trending-now (its own trend period) and aws-similar-items
    into campaigns: the trending items need no user, and a video nobody watched has neighbours."""
    control, runtime = embedded_server.client("personalize"), embedded_server.client("personalize-runtime")
    events_path, videos, _ = watches(tmp_path)
    group = control.create_dataset_group(name="custom")["datasetGroupArn"]
    import_dataset(control, group, "custom-events", "INTERACTIONS", INTERACTIONS, events_path)
    import_dataset(control, group, "custom-items", "ITEMS", VIDEOS, videos)
    refused("InvalidInputException", lambda: control.create_solution(
        name="bad", datasetGroupArn=group, recipeArn=RECIPE + "aws-trending-now",
        solutionConfig={"featureTransformationParameters": {"trend_discovery_frequency": "2 hours"}}))
    campaigns = {}
    for recipe, config in (("aws-trending-now", {"featureTransformationParameters": {
            "trend_discovery_frequency": "30 mins"}}), ("aws-similar-items", {})):
        solution = control.create_solution(name=recipe, datasetGroupArn=group, recipeArn=RECIPE + recipe,
                                           solutionConfig=config)["solutionArn"]
        version = train(control, solution)
        assert version["status"] == "ACTIVE", version
        campaigns[recipe] = control.create_campaign(name=recipe, solutionVersionArn=version[
            "solutionVersionArn"])["campaignArn"]
    trending = runtime.get_recommendations(campaignArn=campaigns["aws-trending-now"], numResults=5)
    assert len(trending["itemList"]) == 5
    with open(videos) as f:
        genres = {m["ITEM_ID"]: set(m["GENRES"].split("|")) for m in csv.DictReader(f)}
    similar = [i["itemId"] for i in runtime.get_recommendations(
        campaignArn=campaigns["aws-similar-items"], itemId=NEW_VIDEO, numResults=10)["itemList"]]
    assert len(similar) == 10 and genres[similar[0]] == genres[NEW_VIDEO]
