"""`modelbuilder experiment ...`: the experiments of a workspace and their runs.

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL, they are read through the server's REST API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
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
from modelbuilder.cli.console import fmt_seconds
from modelbuilder.sdk import workspaces

if TYPE_CHECKING:
    from modelbuilder.core.entities import Run

experiment_app = typer.Typer(
    help="Experiments: named groups of runs. The first run under a new name registers the experiment.",
    no_args_is_help=True,
)


def accuracy(run: Run) -> float | None:
    """The run's validation accuracy: the final one when it finished, else the best epoch's so far."""
    value = run.best_metrics.get("accuracy", run.best_metrics.get("val_accuracy"))
    return None if value is None else float(value)


def duration_s(run: Run) -> float | None:
    """Seconds from its start to its end (to now while it runs); None before it started."""
    if run.started_at is None:
        return None
    return ((run.ended_at or datetime.now(UTC)) - run.started_at).total_seconds()


@experiment_app.command("list")
def list_(workspace: WorkspaceOption = None, as_json: JsonOption = False) -> None:
    """List the experiments of a workspace with their number of runs and the latest run's status."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        experiments = workspaces.experiments(s, workspace, client)
    if as_json:
        echo_json([{**plain(x.experiment), "runs": x.runs, "latest_status": x.latest_status} for x in experiments])
        return
    if not experiments:
        out(f"No experiments in workspace {workspace} yet; the first run under a new name registers one.")
        return
    table = Table("name", "runs", "latest run", "created", header_style="bold",
                  title=f"Experiments of {workspace}", title_justify="left")
    for x in experiments:
        table.add_row(x.experiment.name, str(x.runs), styled(x.latest_status) if x.latest_status else "-",
                      when(x.experiment.created_at))
    out(table)


@experiment_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The experiment's name.", show_default=False)],
    workspace: WorkspaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show an experiment's runs, newest first: status, compute, accuracy, when and how long."""
    with faces() as (s, client):
        workspace = workspace_in_use(s, workspace, client)
        experiment = workspaces.experiment(s, workspace, name, client)
        runs = workspaces.runs(s, workspace, experiment.name, client)
    if as_json:
        echo_json({"experiment": {**plain(experiment), "workspace": workspace},
                   "runs": [_run_summary(run) for run in runs]})
        return
    table = Table("run", "status", "compute", "accuracy", "created", "duration", header_style="bold",
                  title=f"Experiment {experiment.name} in {workspace}: {len(runs)} run(s)", title_justify="left")
    for run in runs:
        value = accuracy(run)
        table.add_row(run.id, styled(run.status), run.compute_name, "-" if value is None else f"{value:.4f}",
                      when(run.created_at), fmt_seconds(duration_s(run)))
    out(table)


def _run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "status": run.status, "status_reason": run.status_reason, "compute": run.compute_name,
        "accuracy": accuracy(run), "best_metrics": run.best_metrics, "created_at": run.created_at,
        "started_at": run.started_at, "ended_at": run.ended_at, "duration_s": duration_s(run),
    }


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")
