"""The solution version report a person reads: metrics with their uncertainty and lift, the
training curve, the hyperparameters used; only for a version that has them."""
from __future__ import annotations

from training.report import not_reportable, render

ARN = "arn:aws:personalize:us-east-1:000000000000:solution/s/1"
VERSION = {
    "solutionVersionArn": ARN, "status": "ACTIVE", "recipeArn": "arn:aws:personalize:::recipe/aws-hrnn",
    "metrics": {"normalized_discounted_cumulative_gain_at_10": 0.12, "coverage": 0.3},
    "baselineMetrics": {"popularity": {"normalized_discounted_cumulative_gain_at_10": 0.08,
                                       "coverage": 0.02}},
    "metricIntervals": {"normalized_discounted_cumulative_gain_at_10": 0.011},
    "testSet": {"users": 61, "interactions": 1523},
    "trainingCurve": [7.5, 6.25, 5.875],
    "hyperparametersUsed": {"epochs": "3", "learning_rate": "0.01"},
}


def test_the_report_shows_uncertainty_lift_test_set_curve_and_hyperparameters() -> None:
    page = render(VERSION, None)
    assert "0.1200 &plusmn; 0.0110" in page and "+50.0%" in page  # NDCG@10 vs popularity's 0.08
    assert "1,523 held-out interactions of 61 users" in page
    assert page.count("<circle") == 3 and "epoch 3: loss 5.8750" in page
    assert "<th>learning_rate</th><td>0.01</td>" in page


def test_a_version_without_a_curve_says_so_instead_of_drawing_nothing() -> None:
    page = render({**VERSION, "trainingCurve": [], "hyperparametersUsed": {}}, None)
    assert "does not train by epochs" in page and "Hyperparameters used" not in page


def test_only_an_active_version_has_a_report() -> None:
    assert not_reportable(VERSION) is None
    for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "CREATE FAILED"):
        why = not_reportable({"solutionVersionArn": ARN, "status": status})
        assert why is not None and status in why and "ACTIVE" in why
