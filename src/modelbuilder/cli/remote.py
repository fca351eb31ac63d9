"""`modelbuilder train` for a client of a remote server (MODELBUILDER_SERVER_URL, no MODELBUILDER_DB_URL):
the run is submitted through the REST API on a data asset (a local folder is uploaded as one first), followed
there, and its result bundle fetched (`sdk.remote`). Ctrl-C cancels the run, as it does locally."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from modelbuilder.cli.console import console, err_console, fail, fmt_seconds
from modelbuilder.core.services import Services
from modelbuilder.sdk import remote
from modelbuilder.sdk.client import Client


def train_remote(services: Services, client: Client, settings: dict[str, Any], *, recipe_file: Path | None,
                 workspace: str | None, experiment: str | None, compute: str, idempotency_key: str | None,
                 detach: bool, output: Path, search: str | None = None) -> None:
    remote.check_sendable(recipe_file, search)
    folder = remote.local_data(settings)
    if folder is not None:  # a local folder: uploaded as a data asset first (resumable; unchanged: not sent)
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task(f"Uploading {folder}", total=None)
            settings, uploaded = remote.upload_data(
                services, client, settings, workspace,
                on_upload=lambda done, total: bar.update(task, completed=done, total=total))
        if uploaded is not None:
            err_console.print(f"Data {folder} is the data asset {uploaded.version.ref} on {client.url}"
                              f"{'' if uploaded.created else ' (unchanged, not sent again)'}.", highlight=False)
    run = remote.submit(client, settings, workspace=services.workspaces.resolve(workspace), experiment=experiment,
                        compute=compute, idempotency_key=idempotency_key)
    console.print(f"Run [bold]{run['id']}[/] queued on compute [bold]{run['compute']}[/] ({run['compute_size']}, "
                  f"{run['priority']}) of {client.url}, workspace {run['workspace']}, experiment {run['experiment']}.",
                  highlight=False, soft_wrap=True)
    console.print(f"Monitor current run: {client.url}{run['portal_path']}", highlight=False, soft_wrap=True)
    if detach:
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous)
        client.json("POST", f"/runs/{run['id']}/cancel")
        err_console.print("Canceling: the best model so far is being exported. Press Ctrl-C again to stop watching.")

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        with console.status("Queued") as status:
            ended = remote.follow(client, run["id"], on_update=lambda r: status.update(escape(_line(r))))
    finally:
        signal.signal(signal.SIGINT, previous)
    if ended["status"] not in ("Completed", "Canceled") or not ended["has_results"]:
        fail(f"run {ended['id']} ended {ended['status']}: {ended['error'] or ended['status_reason']}", code=1)
    placed = remote.download(client, ended["id"], output)
    metrics = ended["best_metrics"]
    accuracy = metrics.get("accuracy")
    console.print(f"\n[bold green]Done[/] ({ended['status']}): validation accuracy "
                  f"[bold]{accuracy:.4f}[/]" if isinstance(accuracy, int | float) else "\n[bold green]Done[/]",
                  highlight=False)
    console.print(f"Wrote {', '.join(placed)} to {output}.", highlight=False, soft_wrap=True)


def _line(run: dict[str, Any]) -> str:
    progress = run.get("progress") or {}
    if run["status"] != "Running" or not progress:
        return f"{run['status']}: {run['status_reason']}"
    parts = [f"{progress.get('phase', 'training')}"]
    if progress.get("epochs"):
        parts.append(f"epoch {progress.get('epoch')}/{progress.get('epochs')}")
    if progress.get("steps"):
        parts.append(f"step {progress.get('step')}/{progress.get('steps')}")
    if isinstance(progress.get("accuracy"), int | float):
        parts.append(f"accuracy {progress['accuracy']:.3f}")
    if isinstance(progress.get("eta_s"), int | float):
        parts.append(f"ETA {fmt_seconds(progress['eta_s'])}")
    return "Running: " + ", ".join(parts)
