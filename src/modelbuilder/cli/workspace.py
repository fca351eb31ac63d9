"""`modelbuilder workspace ...`: create, list, show, use and delete workspaces.

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL, they go through the server's REST API; `use`
remembers the workspace in this home either way.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelbuilder.cli._common import JsonOption, echo_json, faces, out, plain, styled, when, workspace_in_use
from modelbuilder.config import get_settings
from modelbuilder.sdk import computes, workspaces

workspace_app = typer.Typer(
    help="Workspaces: the central place for experiments, computes and runs.", no_args_is_help=True
)

NameArgument = Annotated[str, typer.Argument(help="3 to 33 letters, digits and hyphens.", show_default=False)]


@workspace_app.command("create")
def create(
    name: NameArgument,
    region: Annotated[str, typer.Option(help="One of 'modelbuilder workspace regions' (e.g. local, eastus).",
                                        show_default=False)],
    resource_group: Annotated[str, typer.Option("--resource-group", help="1 to 90 letters, digits, '_', '-', "
                                                "'.', '(' and ')', not ending in '.'.", show_default=False)],
) -> None:
    """Create a workspace."""
    with faces() as (s, client):
        workspace = workspaces.create(s, name, region, resource_group, client)
    out(
        f"Created workspace [bold]{workspace.name}[/] (region {workspace.region}, resource group "
        f"{escape(workspace.resource_group)}). Make it the default with 'modelbuilder workspace use {workspace.name}'."
    )


@workspace_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """List the workspaces (the one in use is marked)."""
    with faces() as (s, client):
        found = workspaces.list_workspaces(s, client)
        current = workspaces.current(s)
    if as_json:
        echo_json([{**plain(w), "in_use": w.name == current} for w in found])
        return
    if not found:
        out("No workspaces yet. Create one with 'modelbuilder workspace create NAME --region local "
                    "--resource-group default'.")
        return
    table = Table("", "name", "region", "resource group", "created", header_style="bold")
    for w in found:
        table.add_row("*" if w.name == current else "", w.name, w.region, escape(w.resource_group), when(w.created_at))
    out(table)


@workspace_app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="Default: the workspace in use, else 'default' (made on "
                                               "first use).", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a workspace: its computes (with state and error), experiments and runs by status."""
    with faces() as (s, client):
        name = workspace_in_use(s, name, client)
        workspace = workspaces.get(s, name, client)
        listed = computes.list_computes(s, name, client)
        experiments = workspaces.experiments(s, name, client)
        runs = workspaces.runs(s, name, client=client)
    by_status = dict(sorted(Counter(run.status for run in runs).items()))
    if as_json:
        echo_json({
            "workspace": plain(workspace),
            "computes": [plain(c) for c in listed],
            "experiments": [{**plain(x.experiment), "runs": x.runs} for x in experiments],
            "runs_by_status": by_status,
        })
        return
    out(f"[bold]{workspace.name}[/]  region {workspace.region}, resource group "
                f"{escape(workspace.resource_group)}, created {when(workspace.created_at)}")
    table = Table("compute", "size", "priority", "kind", "state", "error", title="Computes", title_justify="left",
                  header_style="bold")
    for c in listed:
        table.add_row(c.name, c.size, c.priority, c.kind, styled(c.state), escape(c.error or ""))
    out(table if listed else "No computes. Create one with 'modelbuilder compute create NAME --size auto'.")
    table = Table("experiment", "runs", "created", title="Experiments", title_justify="left", header_style="bold")
    for x in experiments:
        table.add_row(x.experiment.name, str(x.runs), when(x.experiment.created_at))
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
    with faces() as (s, client):
        run_ids = workspaces.delete(s, name, force=force, client=client)
    out(f"Deleted workspace [bold]{name}[/] and its {len(run_ids)} run(s).")


@workspace_app.command("use")
def use(name: NameArgument) -> None:
    """Make NAME the workspace later commands act in when --workspace is not given (remembered in this home;
    through a server, NAME must exist there)."""
    with faces() as (s, client):
        workspace = workspaces.use(s, workspace_in_use(s, name, client), client)
    out(f"Using workspace [bold]{workspace.name}[/] for later commands.")


@workspace_app.command("regions")
def regions() -> None:
    """List the configured regions (MODELBUILDER_REGIONS overrides them), one per line."""
    for region in get_settings().regions:
        typer.echo(region)


def register(app: typer.Typer) -> None:
    app.add_typer(workspace_app, name="workspace")
