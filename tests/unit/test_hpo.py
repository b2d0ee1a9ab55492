"""What an hpoConfig searches: checked as Personalize checks it, sampled within its ranges."""
from __future__ import annotations

import pytest

from kernel.hpo import DEFAULT_OBJECTIVE, search_of
from kernel.recipes import BY_NAME

HRNN = BY_NAME["aws-hrnn"]
DEFAULTS = {n: p.default for n, p in HRNN.hyperparameters.items()}


def config(**ranges: list[dict[str, object]]) -> dict[str, object]:
    return {"algorithmHyperParameterRanges": ranges, "hpoResourceConfig": {"maxNumberOfTrainingJobs": "6"},
            "hpoObjective": {"type": "Maximize", "metricName": "precision_at_10"}}


def test_a_search_samples_within_the_given_ranges_and_the_recipes_own() -> None:
    search = search_of(HRNN, config(
        integerHyperParameterRanges=[{"name": "hidden_dimension", "minValue": 32, "maxValue": 64}],
        continuousHyperParameterRanges=[{"name": "learning_rate", "minValue": 0.001, "maxValue": 0.1}],
        categoricalHyperParameterRanges=[{"name": "recency_mask", "values": ["false"]}]))
    assert (search.objective, search.maximize, search.trials) == ("precision_at_10", True, 6)
    points = search.points(DEFAULTS, seed="v1")
    assert len(points) == 6 and points == search.points(DEFAULTS, seed="v1")  # a re-run searches the same
    assert points != search.points(DEFAULTS, seed="v2")
    assert points[0]["hidden_dimension"] == "48"  # the default, 149, is outside: the range's middle
    assert points[0]["learning_rate"] == DEFAULTS["learning_rate"]
    for p in points:
        assert 32 <= int(p["hidden_dimension"]) <= 64 and 0.001 <= float(p["learning_rate"]) <= 0.1
        assert p["recency_mask"] == "false" and 2 <= int(p["bptt"]) <= 64  # bptt: the recipe's own range
        assert p["max_user_history_length"] == DEFAULTS["max_user_history_length"]  # not tunable


def test_the_defaults_are_personalizes() -> None:
    search = search_of(HRNN, None)
    assert (search.objective, search.maximize) == (DEFAULT_OBJECTIVE, True)
    assert (search.trials, search.parallel) == (5, 1)
    assert search.points(DEFAULTS, "v")[0] == DEFAULTS


@pytest.mark.parametrize("bad, why", [
    (config(integerHyperParameterRanges=[{"name": "max_user_history_length", "minValue": 2, "maxValue": 9}]),
     "not a tunable"),
    (config(integerHyperParameterRanges=[{"name": "hidden_dimension", "minValue": 32, "maxValue": 999}]),
     "outside"),
    (config(integerHyperParameterRanges=[{"name": "hidden_dimension", "minValue": 64, "maxValue": 32}]),
     "above"),
    (config(continuousHyperParameterRanges=[{"name": "hidden_dimension", "minValue": 32, "maxValue": 64}]),
     "int hyperparameter"),
    (config(categoricalHyperParameterRanges=[{"name": "recency_mask", "values": ["maybe"]}]), "bool"),
    ({"hpoObjective": {"metricName": "accuracy"}}, "metricName"),
    ({"hpoObjective": {"type": "Best"}}, "Maximize"),
    ({"hpoResourceConfig": {"maxNumberOfTrainingJobs": "51"}}, "50"),
    ({"hpoResourceConfig": {"maxNumberOfTrainingJobs": "2", "maxParallelTrainingJobs": "3"}}, "50"),
    ({"hpoResourceConfig": {"maxNumberOfTrainingJobs": "many"}}, "whole numbers"),
])
def test_what_personalize_would_refuse_is_refused_with_the_reason(bad: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        search_of(HRNN, bad)


def test_a_recipe_without_tunable_hyperparameters_has_nothing_to_search() -> None:
    with pytest.raises(ValueError, match="nothing to search"):
        search_of(BY_NAME["aws-popularity-count"], None)
