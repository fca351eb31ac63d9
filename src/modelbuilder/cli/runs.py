"""`modelbuilder runs ...`: list, show, follow the log of, cancel, and download the results of runs; the images
it got wrong (`errors`) and its data report (`report`).

With MODELBUILDER_SERVER_URL set and no MODELBUILDER_DB_URL (a client with no store shared with the server),
every command goes through the server's REST API (`sdk.runs`), rendered as here; otherwise through this
home's store.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.table import Table

from modelbuilder.cli._common import faces
from modelbuilder.cli.console import ProgressDisplay, console, fmt_seconds, print_data_report, print_leaderboard
from modelbuilder.sdk import runs

runs_app = typer.Typer(help="Runs: list, show, follow logs, cancel, download results.", no_args_is_help=True)


# --- runs commands -------------------------------------------------------------------------------------
WorkspaceOption = Annotated[str | None, typer.Option(help="Workspace (default: the one in use).", show_default=False)]


@runs_app.command("list")
def list_runs(
    workspace: WorkspaceOption = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.", show_default=False)] = None,
    status: Annotated[str | None, typer.Option(help="Only runs in this status.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runs, newest first."""
    with faces() as (s, client):
        items = runs.list_runs(s, workspace, experiment=experiment, status=status, limit=limit, client=client)
    if as_json:
        typer.echo(json.dumps([_run_json(run) for run in items], indent=2))
        return
    rows = []
    for run, depth in nested(items):
        accuracy = run.best_metrics.get("accuracy", run.best_metrics.get("val_accuracy"))
        rows.append([("└ " if depth else "") + run.id, run.experiment_name, run.status, run.compute_name,
                     f"{accuracy:.4f}" if accuracy is not None else "-", fmt_seconds(run.compute_seconds),
                     f"{run.cost:.4f}", run.created_at.strftime("%Y-%m-%d %H:%M")])
    shown = columns_that_fit(RUN_COLUMNS, rows, console.width)
    hidden = [name for name in RUN_COLUMNS if name not in shown]
    table = Table()
    for name in shown:
        table.add_column(name, no_wrap=True)  # a cut run id could not be copied into the next command
    for row in rows:
        table.add_row(*(cell for name, cell in zip(RUN_COLUMNS, row, strict=True) if name in shown))
    console.print(table)
    if hidden:
        console.print(f"Not shown at {console.width} columns: {', '.join(hidden)} (--json has them).", style="dim",
                      highlight=False, soft_wrap=True)


# The columns of `runs list`, and the order in which they give way to a narrow terminal (last first):
# the run id and the experiment are never cut, they are what the next command needs.
RUN_COLUMNS = ("run", "experiment", "status", "compute", "accuracy", "duration", "cost $", "created")
KEEP_ORDER = ("run", "experiment", "status", "accuracy", "compute", "duration", "created", "cost $")


def nested(items: list[Any]) -> list[tuple[Any, int]]:
    """Runs in list order, each sweep's trials (those listed) right under it by trial number: (run, depth)."""
    listed = {run.id for run in items}
    children: dict[str, list[Any]] = {}
    for run in items:
        if run.parent_run_id in listed:
            children.setdefault(run.parent_run_id, []).append(run)
    out = []
    for run in items:
        if run.parent_run_id not in listed:
            out.append((run, 0))
            trials = sorted(children.get(run.id, []), key=lambda t: (t.trial or {}).get("number", 0))
            out.extend((trial, 1) for trial in trials)
    return out


def columns_that_fit(names: tuple[str, ...], rows: list[list[str]], width: int) -> list[str]:
    """The columns (in table order) whose whole cells fit in `width`, the first of KEEP_ORDER first.

    The run id and the experiment always stay, even when they alone are too wide for the terminal.
    """
    needed = {name: max([cell_len(name)] + [cell_len(row[i]) for row in rows]) + 3  # padding and a border
              for i, name in enumerate(names)}
    kept, used = set(KEEP_ORDER[:2]), 1 + needed[KEEP_ORDER[0]] + needed[KEEP_ORDER[1]]
    for name in KEEP_ORDER[2:]:
        if used + needed[name] > width:
            break
        kept.add(name)
        used += needed[name]
    return [name for name in names if name in kept]


def _run_json(run: Any) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(run), default=str))


@runs_app.command("show")
def show(run_id: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A run: status and its history, progress, metrics, compute time and cost, artifacts."""
    with faces() as (s, client):
        run = runs.get(s, run_id, client)
        history = runs.history(s, run_id, client)
        artifacts = runs.artifacts(s, run_id, client)
        trials = runs.trials(s, run, client) if run.is_sweep else None
    if as_json:
        payload = _run_json(run)
        if trials is not None:
            payload["trials"] = [trial.to_dict() for trial in trials]
        payload["history"] = [json.loads(json.dumps(asdict(h), default=str)) for h in history]
        payload["artifacts"] = [{"path": a.path, "size": a.size, "sha256": a.sha256} for a in artifacts]
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(f"[bold]{run.id}[/]  {run.status}  ({run.status_reason})", highlight=False)
    console.print(f"experiment {run.experiment_name}, compute {run.compute_name} ({run.compute_size}, {run.priority}),"
                  f" attempt {run.attempt}, preemptions {run.preemptions}, error retries {run.error_retries}/"
                  f"{run.max_error_retries}", highlight=False)
    console.print(f"compute time {fmt_seconds(run.compute_seconds)}, estimated cost ${run.cost:.4f}", highlight=False)
    if run.recipe.get("from_run") or run.recipe.get("from_model"):
        console.print(f"started from {run.recipe.get('from_run') or run.recipe['from_model']}", highlight=False)
    if run.best_metrics:
        console.print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(run.best_metrics.items())))
    if run.error:
        console.print(f"[red]error:[/] {run.error}", highlight=False)
    console.print("[bold]status history[/]")
    for change in history:
        console.print(f"  {change.at:%Y-%m-%d %H:%M:%S}  {change.status:<10} {change.reason}", highlight=False)
    if trials is not None:
        print_leaderboard(trials)
    if artifacts:
        console.print(f"[bold]artifacts[/] ({len(artifacts)} files; download with 'modelbuilder runs download "
                      f"{run.id} --output DIR')")


@runs_app.command("logs")
def logs(run_id: str, follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following until "
                                                           "the run ends.")] = False) -> None:
    """Print a run's log; with --follow, keep printing (and show progress) until it ends."""
    with faces() as (s, client):
        if follow:
            with ProgressDisplay() as display:
                for event in runs.events(s, run_id, client):
                    display.show(event)
            return
        lines = runs.logs(s, run_id, client)
    for line in lines:
        console.print(f"{line.at:%H:%M:%S} {line.level:<7} {line.message}", highlight=False, soft_wrap=True)


@runs_app.command("cancel")
def cancel(run_id: str) -> None:
    """Cancel a run: a queued one ends now; a running one stops at its next step and keeps its best model."""
    with faces() as (s, client):
        run = runs.cancel(s, run_id, client)
    if run.status == "Canceled":
        console.print(f"Run {run_id} canceled.")
    else:
        console.print(f"Run {run_id} will stop at its next step; its best model so far is then exported.")


@runs_app.command("download")
def download(run_id: str, output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write into.")]
             = Path(".")) -> None:
    """Write a run's <Name>.ConsoleApp, <Name>.Model, <Name>.WebApi and the three assets into a folder."""
    with faces() as (s, client):
        placed = runs.download(s, run_id, output, client)
    for key, path in placed.items():
        console.print(f"{key}: {path}", highlight=False)


@runs_app.command("errors")
def errors(
    run_id: str,
    label: Annotated[str | None, typer.Option(help="Only images whose true or predicted label is this (multi-label: "
                                              "where this label is wrong, missed or a false alarm).",
                                              show_default=False)] = None,
    true: Annotated[str | None, typer.Option(help="Only images of this true label.", show_default=False)] = None,
    predicted: Annotated[str | None, typer.Option(help="Only images predicted as this label.",
                                                  show_default=False)] = None,
    include_correct: Annotated[bool, typer.Option("--all", help="Also the images it got right (after the "
                                                  "wrong ones, the least sure first).")] = False,
    limit: Annotated[int | None, typer.Option(help="At most this many.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The validation images a run got wrong, the most confidently wrong first."""
    with faces() as (s, client):
        rows = runs.errors(s, run_id, label=label, true=true, predicted=predicted, include_correct=include_correct,
                           limit=limit, client=client)
    if as_json:
        typer.echo(json.dumps([asdict(row) for row in rows], indent=2))
        return
    if not rows:
        console.print("No such images: the model got every one of them right." if not include_correct
                      else "No such images.", highlight=False)
        return
    if rows[0].multilabel:  # a label's score and its margin from the label's threshold, the worst label by default
        table = Table("#", "image", "true", "predicted", "label", "wrong", "its score", "margin")
        for row in rows:
            table.add_row(str(row.index), row.path, row.true_label or "-", row.predicted_label or "-",
                          row.scored_label, row.mistake or "", f"{row.true_score:.3f}", f"{row.score:.3f}")
    else:
        table = Table("#", "image", "true", "predicted", "score", "true score")
        for row in rows:
            table.add_row(str(row.index), row.path, row.true_label, row.predicted_label, f"{row.score:.3f}",
                          f"{row.true_score:.3f}")
    console.print(table)


@runs_app.command("report")
def report(run_id: str, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """A run's data report: duplicates, label balance, likely wrong labels, overfitting, skipped files."""
    with faces() as (s, client):
        found = runs.data_report(s, run_id, client)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    print_data_report(found)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
