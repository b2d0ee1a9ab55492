"""The client commands' command line: where they connect, --version, and a clear refusal."""
from __future__ import annotations

import pytest

from kernel.settings import Settings
from serving import cli
from serving.cli import build_parser, endpoint_of, leaf_commands, main


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


def test_every_command_shows_examples_in_its_help() -> None:
    for name, command in leaf_commands(build_parser()).items():
        assert (command.epilog or "").startswith("examples:\n  personalize " + name.split()[0]), name


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_: object) -> int:
        raise OSError("disk full\nsecond line")

    monkeypatch.setattr(cli, "cmd_api_coverage", broken)
    assert main(["api", "coverage"]) == 1
    err = capsys.readouterr().err
    assert err == "personalize api coverage: OSError: disk full (run with --debug for the traceback)\n"
    with pytest.raises(OSError, match="disk full"):
        main(["--debug", "api", "coverage"])
