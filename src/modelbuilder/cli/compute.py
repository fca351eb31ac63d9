"""`modelbuilder compute ...`: create, list, show and delete computes; the size catalog.

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL, they go through the server's REST API (the
sizes are then the server's, `auto` its host); `evict` is a drill run on the server's host.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from modelbuilder.cli._common import (
    JsonOption,
    WorkspaceOption,
    echo_json,
    faces,
    out,
    plain,
    styled,
    when,
    workspace_in_use,
)
from modelbuilder.cli.console import fail
from modelbuilder.sdk import computes

compute_app = typer.Typer(help="Computes: where runs train (this host, or an existing Ray cluster).",
                          no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="2 to 16 letters, digits and hyphens.", show_default=False)]


@compute_app.command("create")
def create(
    name: NameArgument,
    size: Annotated[str, typer.Option(help="A size from 'modelbuilder compute sizes', or auto (this host).",
                                      show_default=False)],
    priority: Annotated[str, typer.Option(help="low-priority (may be interrupted, cheaper) or dedicated.")]
    = "dedicated",
    kind: Annotated[str, typer.Option(help="local (this host) or ray (an existing Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option(help="The Ray cluster's address (kind ray only), e.g. "
                                                "ray://head:10001.", show_default=False)] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Create a compute and check that its size can really be met.

    When it cannot, the compute stays in state Failed with the reason (exit code 1); delete it before
    creating one under the same name again.
    """
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        compute = computes.create(s, workspace, name, size, priority, kind, address, client)
    if compute.error is not None or compute.state != "Succeeded":
        fail(escape(f"Compute {compute.name!r} is {compute.state}: {compute.error or 'no reason recorded'} "
                    f"It stays listed as {compute.state} until 'modelbuilder compute delete {compute.name}'."),
             code=1)
    where = f" at {escape(compute.address)}" if compute.address else ""
    out(f"Compute [bold]{compute.name}[/] {styled(compute.state)}: {compute.size}, {compute.priority}, "
        f"{compute.kind}{where}, in workspace {workspace}.")


@compute_app.command("list")
def list_(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the computes of a workspace, failed ones with their error."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        listed = computes.list_computes(s, workspace, client)
    if as_json:
        echo_json([plain(c) for c in listed])
        return
    if not listed:
        out(f"No computes in workspace {workspace}. Create one with 'modelbuilder compute create NAME --size auto'.")
        return
    table = Table("name", "size", "priority", "kind", "state", "error", header_style="bold",
                  title=f"Computes of {workspace}", title_justify="left")
    for c in listed:
        table.add_row(c.name, c.size, c.priority, c.kind, styled(c.state), escape(c.error or ""))
    out(table)


@compute_app.command("show")
def show(name: NameArgument, workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """Show one compute: size, priority, kind, state and error."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        compute = computes.get(s, workspace, name, client)
    if as_json:
        echo_json({**plain(compute), "workspace": workspace})
        return
    table = Table.grid(padding=(0, 2))
    for key, value in (
        ("name", compute.name), ("workspace", workspace), ("size", compute.size), ("priority", compute.priority),
        ("kind", compute.kind), ("address", escape(compute.address or "-")), ("state", styled(compute.state)),
        ("error", escape(compute.error or "-")), ("created", when(compute.created_at)),
        ("updated", when(compute.updated_at)), ("id", compute.id),
    ):
        table.add_row(f"[bold]{key}[/]", value)
    out(table)


@compute_app.command("delete")
def delete(
    name: NameArgument,
    force: Annotated[bool, typer.Option("--force", help="Cancel its runs that have not ended, then delete.")]
    = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Delete a compute in any state (a Failed one too). Its past runs stay, with their results."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        canceled = computes.delete(s, workspace, name, force=force, client=client)
    note = f"; canceled {len(canceled)} run(s): {', '.join(canceled)}" if canceled else ""
    out(f"Deleted compute [bold]{name}[/] from workspace {workspace}{note}.")


@compute_app.command("evict")
def evict(name: NameArgument, workspace: WorkspaceOption = None) -> None:
    """Interrupt the running runs of a low-priority compute, as a spot eviction would (a drill): each
    checkpoints at its next step, goes back to the queue and resumes from there. On the store's host only."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        evicted = computes.evict(s, workspace, name, client)
    if evicted:
        out(f"Evicting {len(evicted)} run(s) from [bold]{name}[/]: {', '.join(evicted)}; each resumes from its "
            "checkpoint when capacity allows.")
    else:
        out(f"No running runs on [bold]{name}[/]; nothing to evict.")


@compute_app.command("sizes")
def sizes(as_json: JsonOption = False) -> None:
    """The size catalog with hourly list prices (USD); 'auto' is this host (through a server, the server's).
    Needs no store."""
    with faces() as (s, client):
        priced = computes.sizes(s, client)
    rows = [{**plain(size.spec), "price_per_hour_dedicated": size.dedicated,
             "price_per_hour_low_priority": size.low_priority} for size in priced]
    if as_json:
        echo_json(rows)
        return
    table = Table("name", "vCPU", "memory GiB", "temp disk GiB", "GPUs", "GPU memory GiB", "data disks", "NICs",
                  "$/h dedicated", "$/h low-priority", header_style="bold")
    for column in table.columns[1:]:
        column.justify = "right"
    table.columns[0].no_wrap = True
    for row in rows:
        table.add_row(row["name"], str(row["vcpus"]), f"{row['memory_gib']:g}", f"{row['temp_storage_gib']:g}",
                      str(row["gpus"]), f"{row['gpu_memory_gib']:g}", str(row["max_data_disks"]),
                      str(row["max_nics"]), f"{row['price_per_hour_dedicated']:.4f}",
                      f"{row['price_per_hour_low_priority']:.4f}")
    out(table)


def register(app: typer.Typer) -> None:
    app.add_typer(compute_app, name="compute")
