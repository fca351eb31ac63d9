"""`modelbuilder data ...`: data assets, uploaded once and trained on by name (`train --data pets`).

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL (a client with no store shared with the
server), every command goes through the server's REST API (and MODELBUILDER_TOKEN); otherwise through
this home's store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from modelbuilder.cli._common import JsonOption, WorkspaceOption, echo_json, faces, out, plain, when
from modelbuilder.cli.console import err_console
from modelbuilder.core import entities as e
from modelbuilder.sdk import data

data_app = typer.Typer(
    help="Data assets: images uploaded once as versions 1, 2, ... of a name, trained on with "
         "'modelbuilder train --data NAME' (or NAME:VERSION) on any compute, with no shared folder.",
    no_args_is_help=True,
)
Reference = Annotated[str, typer.Argument(help="NAME (its latest version) or NAME:VERSION (pets:2).",
                                          show_default=False)]


@data_app.command("upload")
def upload(
    source: Annotated[Path, typer.Argument(help="A folder with one sub-folder per label, or a .tsv/.csv manifest "
                                           "(ImageSource, Label).", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The data asset's name (its versions are 1, 2, ...).",
                                      show_default=False)],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pack the images with a manifest (each file's SHA-256) and upload them in resumable chunks as the next
    version of NAME; unchanged images make no new version. Run it again to resume an interrupted upload."""
    with faces() as (s, client), Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                           TransferSpeedColumn(), TimeRemainingColumn(), console=err_console,
                                           transient=True, disable=as_json) as bar:
        task = bar.add_task(f"Uploading {name}", total=None)
        uploaded = data.upload(s, source, name, workspace=workspace, client=client,
                               on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    version = uploaded.version
    if as_json:
        echo_json({**plain(version), "ref": version.ref, "created": uploaded.created, "sent": uploaded.sent,
                   "packed_size": uploaded.packed_size, "seconds": round(uploaded.seconds, 3)})
        return
    if uploaded.created:
        out(f"Uploaded {source} as [bold]{version.ref}[/]: {version.images} images, {len(version.labels)} labels, "
            f"{uploaded.packed_size / (1 << 20):.1f} MiB in {uploaded.seconds:.1f} s.")
    else:
        out(f"Unchanged: {source} is the content of [bold]{version.ref}[/] already; no new version.")
    _print_report(version)
    out(f"Train on it: modelbuilder train --data {version.ref}")


@data_app.command("list")
def list_(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the data assets of a workspace, with their latest version."""
    with faces() as (s, client):
        found = data.assets(s, workspace, client)
    if as_json:
        echo_json([_asset(a) for a in found])
        return
    if not found:
        out("No data assets; upload one with 'modelbuilder data upload FOLDER --name NAME'.")
        return
    table = Table("name", "versions", "latest", "images", "labels", "updated", header_style="bold",
                  title="Data assets", title_justify="left")
    for asset in found:
        latest = asset.latest
        table.add_row(asset.name, str(len(asset.versions)), str(latest.version) if latest else "-",
                      str(latest.images) if latest else "-", str(len(latest.labels)) if latest else "-",
                      when(asset.updated_at))
    out(table)


@data_app.command("show")
def show(
    reference: Reference,
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a data asset's versions, and a version's labels, counts and data report."""
    with faces() as (s, client):
        version = data.version(s, reference, workspace, client)
        asset = data.show(s, version.asset, workspace, client)
    if as_json:
        echo_json({**_asset(asset), "shown": {**plain(version), "ref": version.ref}})
        return
    table = Table("version", "images", "labels", "MiB", "uploaded", header_style="bold",
                  title=f"Data asset {asset.name}: {len(asset.versions)} version(s)", title_justify="left")
    for v in asset.versions:
        table.add_row(str(v.version), str(v.images), str(len(v.labels)), f"{v.size / (1 << 20):.1f}",
                      when(v.created_at))
    out(table)
    labels = Table("label", "images", header_style="bold", title=f"{version.ref}", title_justify="left")
    for label, count in version.labels.items():
        labels.add_row(label, str(count))
    out(labels)
    _print_report(version)


@data_app.command("download")
def download(
    reference: Reference,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the images into (at their "
                                         "paths, with labels.tsv).", show_default=False)],
    workspace: WorkspaceOption = None,
) -> None:
    """Write a version's images into a folder, at the paths they were uploaded from."""
    with faces() as (s, client):
        version, target = data.download(s, reference, output, workspace, client)
    out(f"Wrote {version.ref} ({version.images} images) to {target}.")


@data_app.command("delete")
def delete(
    reference: Reference,
    workspace: WorkspaceOption = None,
) -> None:
    """Delete a version (pets:2) or every version (pets); refused while a queued or running run uses it."""
    with faces() as (s, client):
        deleted = data.delete(s, reference, workspace, client)
    out(f"Deleted {reference}: version(s) {', '.join(map(str, deleted)) or 'none'}.")


def _print_report(version: e.DataVersion) -> None:
    for line in version.report.get("summary", []):
        style = "yellow" if line.get("level") == "warning" else "dim"
        fix = f" Fix: {line['fix']}" if line.get("fix") else ""
        out(f"[{style}]{escape(line['text'] + fix)}[/]")
    for skipped in version.report.get("skipped", [])[:10]:
        out(f"[dim]  skipped {escape(skipped['path'])}: {escape(skipped['reason'])}[/]")


def _asset(asset: e.DataAsset) -> dict[str, Any]:
    return {"name": asset.name, "created_at": asset.created_at, "updated_at": asset.updated_at,
            "versions": [{**plain(v), "ref": v.ref} for v in asset.versions]}


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
