"""How the CLI words the steps that fix an error (`errors.Step`): as the command that takes them."""

from __future__ import annotations

from modelbuilder.errors import ModelBuilderError, Step

COMMANDS = {
    "list_workspaces": "modelbuilder workspace list",
    "create_workspace": "modelbuilder workspace create {workspace} --region local --resource-group default",
    "use_workspace": "modelbuilder workspace use {workspace}",
    "list_regions": "modelbuilder workspace regions",
    "list_computes": "modelbuilder compute list{in_workspace}",
    "create_compute": "modelbuilder compute create {compute} --size auto{in_workspace}",
    "show_compute": "modelbuilder compute show {compute}{in_workspace}",
    "delete_compute": "modelbuilder compute delete {compute}{in_workspace}",
    "compute_sizes": "modelbuilder compute sizes",
    "list_experiments": "modelbuilder experiment list{in_workspace}",
    "list_runs": "modelbuilder runs list",
    "show_run": "modelbuilder runs show {run}",
    "cancel_run": "modelbuilder runs cancel {run}",
    "follow_run": "modelbuilder runs logs {run} --follow",
    "list_artifacts": "modelbuilder runs show {run}",
    "upgrade_store": "modelbuilder db upgrade",
    "list_models": "modelbuilder models list{in_workspace}",
    "show_model": "modelbuilder models show {model}{in_workspace}",
    "list_data": "modelbuilder data list{in_workspace}",
    "show_data": "modelbuilder data show {data}{in_workspace}",
}
# Steps that are an option rather than a command.
OPTIONS = {
    "delete_with_force": "--force",
    "choose_home": "--home DIR",
    "give_data": "--data PATH",
    "give_validation_data": "--validation-data FOLDER",
}


def command(step: Step) -> str | None:
    """The command (quoted) or the option that takes `step`."""
    if step.action in OPTIONS:
        return OPTIONS[step.action]
    workspace = step.args.get("workspace")
    in_workspace = f" --workspace {workspace}" if workspace and workspace != "default" else ""
    return f"'{COMMANDS[step.action].format(**step.args, in_workspace=in_workspace)}'"


def one_line(error: ModelBuilderError) -> str:
    """The error as the CLI prints it: what was wrong, then the fix in the CLI's own terms."""
    hint = error.hint_in(command)
    return f"{error.message} Fix: {hint}" if hint else error.message
