"""`modelbuilder workspace ...`: create, list, show, use and delete workspaces."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelbuilder.cli._common import JsonOption, echo_json, out, plain, services, styled, when, workspace_in_use
from modelbuilder.config import get_settings

workspace_app = typer.Typer(
    help="Workspaces: the central place for experiments, computes and runs.", no_args_is_help=True
)

NameArgument = Annotated[str, typer.Argument(help="3 to 33 letters, digits and hyphens.", show_default=False)]

# A workspace's runs are counted through the run listing, whose page tops out here.
RUN_COUNT_LIMIT = 10_000


@workspace_app.command("create")
def create(
    name: NameArgument,
    region: Annotated[str, typer.Option(help="One of 'modelbuilder workspace regions' (e.g. local, eastus).",
                                        show_default=False)],
    resource_group: Annotated[str, typer.Option("--resource-group", help="1 to 90 letters, digits, '_', '-', "
                                                "'.', '(' and ')', not ending in '.'.", show_default=False)],
) -> None:
    """Create a workspace."""
    with services() as s:
        workspace = s.workspaces.create(name, region, resource_group)
    out(
        f"Created workspace [bold]{workspace.name}[/] (region {workspace.region}, resource group "
        f"{escape(workspace.resource_group)}). Make it the default with 'modelbuilder workspace use {workspace.name}'."
    )


@workspace_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the workspaces (the one in use is marked)."""
    with services() as s:
        workspaces = s.workspaces.list()
        current = s.workspaces.current_workspace()
    if as_json:
        echo_json([{**plain(w), "in_use": w.name == current} for w in workspaces])
        return
    if not workspaces:
        out("No workspaces yet. Create one with 'modelbuilder workspace create NAME --region local "
                    "--resource-group default'.")
        return
    table = Table("", "name", "region", "resource group", "created", header_style="bold")
    for w in workspaces:
        table.add_row("*" if w.name == current else "", w.name, w.region, escape(w.resource_group), when(w.created_at))
    out(table)


@workspace_app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="Default: the workspace in use, else 'default' (made on "
                                               "first use).", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a workspace: its computes (with state and error), experiments and runs by status."""
    with services() as s:
        name = workspace_in_use(s, name)
        workspace = s.workspaces.get(name)
        computes = s.computes.list(name)
        experiments = s.workspaces.list_experiments(name)
        runs = s.runs.list(name, limit=RUN_COUNT_LIMIT)
    by_status = dict(sorted(Counter(run.status for run in runs).items()))
    per_experiment = Counter(run.experiment_name for run in runs)
    if as_json:
        echo_json({
            "workspace": plain(workspace),
            "computes": [plain(c) for c in computes],
            "experiments": [{**plain(x), "runs": per_experiment[x.name]} for x in experiments],
            "runs_by_status": by_status,
        })
        return
    out(f"[bold]{workspace.name}[/]  region {workspace.region}, resource group "
                f"{escape(workspace.resource_group)}, created {when(workspace.created_at)}")
    table = Table("compute", "size", "priority", "kind", "state", "error", title="Computes", title_justify="left",
                  header_style="bold")
    for c in computes:
        table.add_row(c.name, c.size, c.priority, c.kind, styled(c.state), escape(c.error or ""))
    out(table if computes else "No computes. Create one with 'modelbuilder compute create NAME --size auto'.")
    table = Table("experiment", "runs", "created", title="Experiments", title_justify="left", header_style="bold")
    for x in experiments:
        table.add_row(x.name, str(per_experiment[x.name]), when(x.created_at))
    out(table if experiments else "No experiments yet; the first run under a new name registers one.")
    counts = ", ".join(f"{styled(status)} {count}" for status, count in by_status.items())
    out(f"Runs: {len(runs)}" + (f" ({counts})" if counts else ""))


@workspace_app.command("delete")
def delete(
    name: NameArgument,
    force: Annotated[bool, typer.Option("--force", help="Cancel its runs that have not ended, then delete.")]
    = False,
) -> None:
    """Delete a workspace with its experiments, computes, runs and their artifacts."""
    with services() as s:
        run_ids = s.workspaces.delete(name, force=force)
        for run_id in run_ids:
            s.artifacts.delete_run(run_id)
    out(f"Deleted workspace [bold]{name}[/] and its {len(run_ids)} run(s).")


@workspace_app.command("use")
def use(name: NameArgument) -> None:
    """Make NAME the workspace later commands act in when --workspace is not given."""
    with services() as s:
        workspace = s.workspaces.use_workspace(workspace_in_use(s, name))
    out(f"Using workspace [bold]{workspace.name}[/] for later commands.")


@workspace_app.command("regions")
def regions() -> None:
    """List the configured regions (MODELBUILDER_REGIONS overrides them), one per line."""
    for region in get_settings().regions:
        typer.echo(region)


def register(app: typer.Typer) -> None:
    app.add_typer(workspace_app, name="workspace")
