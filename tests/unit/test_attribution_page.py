"""The metric attribution report as a page and as lines: every metric per source, each split's
arms and lift, and nothing a source's name could inject."""
from __future__ import annotations

from serving.attribution_page import lines, render

A = "arn:aws:personalize:us-east-1:000000000000:campaign/home"
B = "arn:aws:personalize:us-east-1:000000000000:campaign/home-b"
REPORT = {
    "name": "impact", "events": 1234,
    "metrics": [{"metricName": "CLICKS", "eventType": "click", "expression": "SAMPLECOUNT()"}],
    "totals": [{"metricName": "CLICKS", "source": A, "value": 40.0},
               {"metricName": "CLICKS", "source": "<script>alert(1)</script>", "value": 2.0}],
    "splits": [{"campaignArn": A, "armB": B, "share": 0.25, "since": 1.0, "metrics": [
        {"metricName": "CLICKS", "a": {"users": 30, "mean": 1.0, "variance": 1.0},
         "b": {"users": 10, "mean": 1.5, "variance": 1.0}, "lift": 0.5, "low": 0.1, "high": 1.1,
         "significant": True}]}]}


def test_the_page_draws_each_metric_per_source_and_each_splits_lift() -> None:
    page = render(REPORT)
    assert page.count("<svg") == 2 and "<script>" not in page and "&lt;script&gt;" in page
    assert "home (A) vs home-b (B), 25% of users in B" in page
    assert "+50.0%" in page and "[+10.0%, +110.0%]" in page


def test_a_split_without_enough_data_says_so() -> None:
    split = REPORT["splits"][0] | {"metrics": [REPORT["splits"][0]["metrics"][0] | {
        "lift": None, "low": None, "high": None}]}
    page = render(REPORT | {"splits": [split]})
    assert "not enough data" in page and "n/a" in page


def test_the_lines_name_campaigns_by_name() -> None:
    assert lines(REPORT) == ["CLICKS home: 40", "CLICKS <script>alert(1)</script>: 2",
                             "CLICKS lift of home-b over home: +50.0% [+10.0%, +110.0%]"]
