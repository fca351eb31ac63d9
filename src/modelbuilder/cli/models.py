"""`modelbuilder models ...`: registered models, names with numbered versions and aliases.

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL (a client with no store shared with the server),
every command goes through the server's REST API (`sdk.registry` with a client), rendered as here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from modelbuilder.cli._common import (
    JsonOption,
    WorkspaceOption,
    echo_json,
    faces,
    out,
    plain,
    when,
    workspace_in_use,
)
from modelbuilder.core import entities as e
from modelbuilder.sdk import registry

models_app = typer.Typer(
    help="Registered models: a name with versions 1, 2, ..., each a finished run's result, and aliases "
         "(production) that 'modelbuilder serve' and 'modelbuilder predict' can name as pets:production.",
    no_args_is_help=True,
)
Reference = Annotated[str, typer.Argument(help="NAME (its latest version), NAME:VERSION (pets:3) or NAME:ALIAS "
                                          "(pets:production).", show_default=False)]


def _accuracy(version: e.ModelVersion) -> str:
    value = version.metrics.get("accuracy")
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


@models_app.command("register")
def register_(
    run_id: Annotated[str, typer.Argument(help="A finished run's id.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="The model's name (its versions are 1, 2, ...).",
                                      show_default=False)],
    alias: Annotated[str | None, typer.Option(help="Point this alias (for example production) at the new "
                                              "version.", show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """Register a finished run's result as the next version of a model."""
    with faces() as (s, client):
        version = registry.register(s, run_id, name, alias=alias, client=client)
    if as_json:
        echo_json(plain(version))
        return
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    out(f"Registered {run_id} as [bold]{version.ref}[/]{aliases}.")


@models_app.command("list")
def list_(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the registered models of a workspace: their latest version and aliases."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        models = registry.models(s, workspace, client)
    if as_json:
        echo_json([_model(m) for m in models])
        return
    if not models:
        out(f"No registered models in workspace {workspace}; register a run with 'modelbuilder models register "
            "RUN_ID --name NAME'.")
        return
    table = Table("name", "versions", "latest", "accuracy", "aliases", "updated", header_style="bold",
                  title=f"Registered models of {workspace}", title_justify="left")
    for m in models:
        latest = m.latest
        table.add_row(m.name, str(len(m.versions)), str(latest.version) if latest else "-",
                      _accuracy(latest) if latest else "-",
                      ", ".join(f"{a} -> {v}" for a, v in m.aliases.items()) or "-", when(m.updated_at))
    out(table)


@models_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The model's name.", show_default=False)],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a model's versions, newest first: their source run, metrics and aliases."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        model = registry.show(s, name, workspace, client)
    if as_json:
        echo_json(_model(model))
        return
    table = Table("version", "run", "accuracy", "macro F1", "aliases", "registered", header_style="bold",
                  title=f"Model {model.name} in {workspace}: {len(model.versions)} version(s)", title_justify="left")
    for v in model.versions:
        f1 = v.metrics.get("macro_f1")
        table.add_row(str(v.version), v.run_id, _accuracy(v), f"{f1:.4f}" if isinstance(f1, int | float) else "-",
                      ", ".join(v.aliases) or "-", when(v.created_at))
    out(table)


@models_app.command("alias")
def alias_(
    reference: Reference,
    alias: Annotated[str, typer.Argument(help="The alias, for example production.", show_default=False)],
    remove: Annotated[bool, typer.Option("--remove", help="Remove the alias instead (REFERENCE is then the "
                                         "model's name).")] = False,
    workspace: WorkspaceOption = None,
) -> None:
    """Point an alias at a version (models alias pets:3 production), or remove it."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        if remove:
            registry.remove_alias(s, reference, alias, workspace, client)
            out(f"Removed the alias {alias} of {reference}.")
            return
        version = registry.set_alias(s, reference, alias, workspace, client)
    out(f"{version.model}:{alias} is now version {version.version} (run {version.run_id}).")


@models_app.command("download")
def download(
    reference: Reference,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the result into.",
                                         show_default=False)],
    workspace: WorkspaceOption = None,
) -> None:
    """Write a version's MLModel.zip, bestModel.onnx, bestModelMap.json and generated projects into a folder."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        version, placed = registry.download(s, reference, output, workspace, client)
    out(f"Wrote {version.ref} (run {version.run_id}) to {output}: {', '.join(sorted(placed))}.")


def _model(model: e.RegisteredModel) -> dict[str, Any]:
    return {"name": model.name, "created_at": model.created_at, "updated_at": model.updated_at,
            "aliases": model.aliases, "versions": [plain(v) for v in model.versions]}


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
