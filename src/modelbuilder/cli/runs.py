"""`modelbuilder runs ...`, plus submitting and following a run for `train`."""

from __future__ import annotations

import json
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from modelbuilder.cli.console import ProgressDisplay, console, err_console, fmt_seconds
from modelbuilder.training.reporter import Progress

runs_app = typer.Typer(help="Runs: list, show, follow logs, cancel, download results.", no_args_is_help=True)


def _open() -> tuple[Any, Any]:
    from modelbuilder.core.runs import RunService
    from modelbuilder.core.store import Store

    store = Store.open()
    return store, RunService(store)


def submit_run(config: Any, workspace: str | None, experiment: str, compute: str,
               idempotency_key: str | None) -> tuple[Any, Any, Any]:
    """Queue a run of `config`; the default workspace and local compute are created on first use."""
    from modelbuilder.config import get_settings, run_url, running_server
    from modelbuilder.core.workspace import WorkspaceService

    store, runs = _open()
    workspaces = WorkspaceService(store)
    ws = workspaces.resolve(workspace)
    if ws == "default":
        workspaces.ensure_default()
    run = runs.submit(ws, experiment, compute, config.to_dict(), project_name=config.name,
                      idempotency_key=idempotency_key)
    console.print(f"Run [bold]{run.id}[/] queued on compute [bold]{run.compute_name}[/] ({run.compute_size}, "
                  f"{run.priority}), workspace {ws}, experiment {run.experiment_name}.", highlight=False,
                  soft_wrap=True)
    server = running_server(get_settings())
    if server:
        console.print(f"Monitor current run: {run_url(server, ws, run.id)}", highlight=False, soft_wrap=True)
    return run, runs, store


def follow_run(run_id: str, runs: Any, store: Any, output: Path | None) -> None:
    """Show the run live until it ends; Ctrl-C cancels it (the best model so far is still exported)."""
    from modelbuilder.backends import start_agent
    from modelbuilder.config import get_settings, server_runs_agent

    agent = None if server_runs_agent(get_settings()) else start_agent(store, poll_s=0.5)
    previous = signal.getsignal(signal.SIGINT)
    canceling = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal canceling
        if canceling:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        canceling = True
        runs.request_cancel(run_id)
        err_console.print("Canceling: the best model so far is being exported. Press Ctrl-C again to stop "
                          f"watching (run {run_id} then ends on its own).")

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        run = watch(run_id, runs)
    finally:
        signal.signal(signal.SIGINT, previous)
        if agent is not None:
            agent.stop()
    finish(run, output)


def watch(run_id: str, runs: Any, show_logs: bool = True) -> Any:
    from modelbuilder.core.follow import follow
    from modelbuilder.core.recording import RunRecorder

    run = None
    with ProgressDisplay() as display:
        for event in follow(runs, RunRecorder(runs.store), run_id):
            run = event.run
            if event.kind == "status" and event.status is not None:
                display.status(event.status.status, event.status.reason)
            elif event.kind == "log" and event.log is not None and show_logs:
                if not event.log.message.startswith(("Preparing:", "Running:", "Finalizing:")):
                    display.log(event.log.message, event.log.level)
            elif event.kind == "metrics" and event.epoch is not None:
                display.metrics(event.epoch, event.values)
            elif event.kind == "progress":
                fields = {k: v for k, v in event.progress.items() if k in Progress.__dataclass_fields__}
                display.progress(Progress(**fields))
    return run


def finish(run: Any, output: Path | None) -> None:
    from modelbuilder.cli.console import fail
    from modelbuilder.cli.train import print_summary
    from modelbuilder.config import get_settings
    from modelbuilder.core.artifacts import ArtifactStore
    from modelbuilder.results.bundle import copy_results

    if run.status not in ("Completed", "Canceled") or not run.best_metrics:
        fail(f"run {run.id} ended {run.status}: {run.error or run.status_reason}", code=1)
    run_dir = ArtifactStore(get_settings().artifacts).run_dir(run.id)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    placed = copy_results(run_dir, run.project_name or "MLModel", output) if output is not None else {}
    print_summary(metrics, placed, metrics.get("stopped", run.status.lower()))


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
    from rich.table import Table

    from modelbuilder.core.workspace import WorkspaceService

    store, runs = _open()
    ws = WorkspaceService(store).resolve(workspace)
    items = runs.list(ws, experiment=experiment, status=status, limit=limit)
    if as_json:
        typer.echo(json.dumps([_run_json(run) for run in items], indent=2))
        return
    rows = []
    for run in items:
        accuracy = run.best_metrics.get("accuracy", run.best_metrics.get("val_accuracy"))
        rows.append([run.id, run.experiment_name, run.status, run.compute_name,
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


def columns_that_fit(names: tuple[str, ...], rows: list[list[str]], width: int) -> list[str]:
    """The columns (in table order) whose whole cells fit in `width`, the first of KEEP_ORDER first.

    The run id and the experiment always stay, even when they alone are too wide for the terminal.
    """
    from rich.cells import cell_len

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
    store, runs = _open()
    run = runs.get(run_id)
    history = runs.history(run_id)
    from modelbuilder.core.recording import RunRecorder

    artifacts = RunRecorder(store).artifacts(run_id)
    if as_json:
        payload = _run_json(run)
        payload["history"] = [json.loads(json.dumps(asdict(h), default=str)) for h in history]
        payload["artifacts"] = [{"path": a.path, "size": a.size, "sha256": a.sha256} for a in artifacts]
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(f"[bold]{run.id}[/]  {run.status}  ({run.status_reason})", highlight=False)
    console.print(f"experiment {run.experiment_name}, compute {run.compute_name} ({run.compute_size}, {run.priority}),"
                  f" attempt {run.attempt}, preemptions {run.preemptions}, error retries {run.error_retries}/"
                  f"{run.max_error_retries}", highlight=False)
    console.print(f"compute time {fmt_seconds(run.compute_seconds)}, estimated cost ${run.cost:.4f}", highlight=False)
    if run.best_metrics:
        console.print("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(run.best_metrics.items())))
    if run.error:
        console.print(f"[red]error:[/] {run.error}", highlight=False)
    console.print("[bold]status history[/]")
    for change in history:
        console.print(f"  {change.at:%Y-%m-%d %H:%M:%S}  {change.status:<10} {change.reason}", highlight=False)
    if artifacts:
        console.print(f"[bold]artifacts[/] ({len(artifacts)} files; download with 'modelbuilder runs download "
                      f"{run.id} --output DIR')")


@runs_app.command("logs")
def logs(run_id: str, follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep following until "
                                                           "the run ends.")] = False) -> None:
    """Print a run's log; with --follow, keep printing (and show progress) until it ends."""
    store, runs = _open()
    if follow:
        watch(run_id, runs)
        return
    from modelbuilder.core.recording import RunRecorder

    for line in RunRecorder(store).logs(run_id, limit=100_000):
        console.print(f"{line.at:%H:%M:%S} {line.level:<7} {line.message}", highlight=False, soft_wrap=True)


@runs_app.command("cancel")
def cancel(run_id: str) -> None:
    """Cancel a run: a queued one ends now; a running one stops at its next step and keeps its best model."""
    store, runs = _open()
    run = runs.request_cancel(run_id)
    if run.status == "Canceled":
        console.print(f"Run {run_id} canceled.")
    else:
        console.print(f"Run {run_id} will stop at its next step; its best model so far is then exported.")


@runs_app.command("download")
def download(run_id: str, output: Annotated[Path, typer.Option(help="Folder to write into.")] = Path(".")) -> None:
    """Write a run's <Name>.ConsoleApp, <Name>.Model and the three assets into a folder."""
    from modelbuilder.config import get_settings
    from modelbuilder.core.artifacts import ArtifactStore
    from modelbuilder.errors import Conflict
    from modelbuilder.results.bundle import copy_results

    store, runs = _open()
    run = runs.get(run_id)
    run_dir = ArtifactStore(get_settings().artifacts).run_dir(run.id)
    if not (run_dir / "MLModel.zip").is_file():
        raise Conflict(f"Run {run_id} has no results ({run.status}).",
                       "wait until it is Completed ('modelbuilder runs logs RUN_ID --follow').")
    placed = copy_results(run_dir, run.project_name or "MLModel", output)
    for key, path in placed.items():
        console.print(f"{key}: {path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
