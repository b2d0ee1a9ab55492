"""The client commands' command line: where they connect, --version, and a clear refusal."""
from __future__ import annotations

import pytest

from serving.cli import endpoint_of, main
from stream.settings import Settings
from training.report import not_reportable


def test_the_endpoint_is_the_flag_then_the_aws_clis_variables_then_this_machines_server() -> None:
    settings = Settings(host="127.0.0.1", port=9000)
    both = {"AWS_ENDPOINT_URL_PERSONALIZE": "http://p:1", "AWS_ENDPOINT_URL": "http://any:2"}
    assert endpoint_of("http://flag:3", both, settings) == "http://flag:3"
    assert endpoint_of(None, both, settings) == "http://p:1"
    assert endpoint_of(None, {"AWS_ENDPOINT_URL": "http://any:2"}, settings) == "http://any:2"
    assert endpoint_of(None, {}, settings) == "http://127.0.0.1:9000"


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("personalize ")


def test_a_report_of_something_that_is_not_a_version_arn_is_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solution-version", "report", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a solution version ARN" in err


def test_only_an_active_version_has_a_report() -> None:
    arn = "arn:aws:personalize:us-east-1:000000000000:solution/s/1"
    assert not_reportable({"solutionVersionArn": arn, "status": "ACTIVE"}) is None
    for status in ("CREATE PENDING", "CREATE IN_PROGRESS", "CREATE FAILED"):
        why = not_reportable({"solutionVersionArn": arn, "status": status})
        assert why is not None and status in why and "ACTIVE" in why
