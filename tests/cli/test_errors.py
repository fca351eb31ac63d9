"""End to end, as a user runs it (`python -m modelbuilder` in a subprocess): a mistake is one line with
its fix on stderr, exit code 2, never a traceback; and nothing else is printed."""

from __future__ import annotations

from tests.cli.driver import Cli


def test_an_invalid_workspace_name(run_module: Cli) -> None:
    result = run_module("workspace", "create", "team_vision", "--region", "local", "--resource-group", "g")
    result.user_error("Workspace name 'team_vision' is not valid", "Fix: use 3 to 33 characters")
    assert result.stdout == ""


def test_a_compute_that_does_not_exist(run_module: Cli) -> None:
    result = run_module("compute", "show", "gpu-9", "--json")
    result.user_error("Compute 'gpu-9' does not exist in workspace 'default'", "modelbuilder compute create gpu-9")
    assert result.stdout == ""


def test_the_commands_are_registered(run_module: Cli) -> None:
    result = run_module("--help")
    assert result.code == 0, result
    for command in ("workspace", "compute", "experiment", "db", "train", "predict"):
        assert f" {command} " in result.stdout


def test_an_error_naming_a_value_with_brackets_is_printed_as_text(run_module: Cli) -> None:
    result = run_module("workspace", "create", "team", "--region", "[/]", "--resource-group", "g")
    result.user_error("Region '[/]' is not one of the configured regions")
