"""`modelbuilder train`: one command from a folder of images to a ready result.

The run is submitted to the store (`sdk.submit`: the same checks as the SDK and the API) and executed
by an agent on its compute, in a worker process, like any other run: the command follows it live from
the store (`sdk.wait`), and on Ctrl-C cancels it cleanly (the best model so far is still exported).
Without a server running, the command runs an agent itself while it waits; with `--detach` it only
submits.
"""

from __future__ import annotations

import datetime
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from modelbuilder.cli._common import faces
from modelbuilder.cli.console import (
    ProgressDisplay,
    console,
    err_console,
    fail,
    print_data_report,
    print_leaderboard,
    print_summary,
)
from modelbuilder.config import get_settings
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.results.bundle import copy_results
from modelbuilder.sdk import remote, runs, submit, sweep
from modelbuilder.sdk.client import Client
from modelbuilder.sdk.submit import Submitted
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.search import SweepSettings

DATA_HELP = ("A folder with one sub-folder per label, a .tsv/.csv manifest with ImageSource and Label columns, "
             'a .jsonl manifest of {"image_url": ..., "label": ...} lines (paths relative to the manifest), or a '
             "data asset (pets for its latest version, pets:2; see 'modelbuilder data').")


def train(
    data: Annotated[Path | None, typer.Option(help=DATA_HELP, show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Name of the generated <Name>.ConsoleApp, .Model and .WebApi "
                                             "(default: from the data folder's name).", show_default=False)] = None,
    output: Annotated[Path, typer.Option(help="Folder that receives <Name>.ConsoleApp, <Name>.Model, "
                                         "<Name>.WebApi and the three assets.")] = Path("."),
    workspace: Annotated[str | None, typer.Option(help="Workspace (default: the one in use, else 'default').",
                                                  show_default=False)] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment; the first run registers it (default: "
                                                   "from the data folder's name).", show_default=False)] = None,
    compute: Annotated[str, typer.Option(help="Compute to train on.")] = "local",
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (default: as many as --time-budget fits, "
                                               "else 15).", show_default=False)] = None,
    time_budget: Annotated[str | None, typer.Option(help="The whole job's time (e.g. 10m, 1h30m): without --epochs "
                                                    "the schedule is planned to end, export included, within it; "
                                                    "with --epochs training stops there, keeping the best.",
                                                    show_default=False)] = None,
    image_size: Annotated[int | None, typer.Option(help="Input size in pixels (default: from the data, 32 to "
                                                   "224).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step (default: from the data, 16 to 64).",
                                                   show_default=False)] = None,
    architecture: Annotated[str | None, typer.Option(help="resnet50 (default), resnet18, mobilenet_v3_large, "
                                                     "efficientnet_b0, regnet_y_800mf, convnext_tiny, tiny.",
                                                     show_default=False)] = None,
    weights: Annotated[str | None, typer.Option(help="auto (ImageNet weights if available, default), none, or "
                                                "a state dict file.", show_default=False)] = None,
    mode: Annotated[str | None, typer.Option(help="auto (default), full, or head (train only the new head "
                                             "on frozen pretrained features).", show_default=False)] = None,
    task: Annotated[str | None, typer.Option(help="multiclass (one label per image), multilabel (several: a sigmoid "
                                             "per label, thresholds chosen on validation), or auto (default: "
                                             "multilabel where the manifest lists labels).",
                                             show_default=False)] = None,
    validation_fraction: Annotated[float | None, typer.Option(help="Share of each label held out for "
                                                              "validation (default 0.2).", show_default=False)] = None,
    validation_data: Annotated[Path | None, typer.Option(help="Separate validation data (a folder or a "
                                                         "manifest, as --data).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split, order and augmentation (default 0).",
                                             show_default=False)] = None,
    hflip: Annotated[bool | None, typer.Option("--hflip/--no-hflip", help="Random horizontal flips while "
                                               "training (default on; turn off where a mirrored image means "
                                               "something else: digits, text).", show_default=False)] = None,
    class_weights: Annotated[str | None, typer.Option(help="Weigh the loss by label against imbalance (over "
                                                      "the last third of the epochs): none (default), sqrt, balanced.",
                                                      show_default=False)] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16 where the hardware has it), bf16, fp32.",
                                                  show_default=False)] = None,
    processes: Annotated[int | None, typer.Option(help="Data-parallel processes (default: one per GPU of the "
                                                  "compute's size; on CPUs, 1).", show_default=False)] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile the model "
                                                 "(CUDA only; off by default).", show_default=False)] = None,
    recipe: Annotated[Path | None, typer.Option(help="YAML file of recipe settings (any field of the recipe, "
                                                "e.g. data, epochs, time_budget_s: 10m); flags override it. "
                                                "Paths in it are relative to the file.", show_default=False)] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Submitting again with this key returns the same "
                                                        "run instead of a new one.", show_default=False)] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Only submit; follow later with 'runs logs "
                                         "--follow'.")] = False,
    from_run: Annotated[str | None, typer.Option("--from-run", help="Start from this run's best model: with the "
                                                 "same labels it continues at a lower learning rate; with new "
                                                 "labels its backbone is kept and the head rebuilt.",
                                                 show_default=False)] = None,
    from_model: Annotated[Path | None, typer.Option("--from-model", help="Start from a model, as --from-run: a "
                                                    "run's MLModel.zip, or a checkpoint (checkpoints/best.pt).",
                                                    show_default=False)] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a training from a checkpoint file "
                                                "(checkpoints/last.pt), here in this process.",
                                                show_default=False)] = None,
    search: Annotated[str | None, typer.Option(help="Search for the best model: 'auto' (a built-in space around "
                                               "the default recipe) or a YAML space file (Azure's names: model_name, "
                                               "learning_rate, ...; choice(), uniform(), loguniform()). Runs a "
                                               "sweep: one trial run per setting, the best one's result.",
                                               show_default=False, rich_help_panel="Search")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Trials at most (default 10).", show_default=False,
                                                   rich_help_panel="Search")] = None,
    max_concurrent_trials: Annotated[int | None, typer.Option(help="Trials at once (default 1; at most what the "
                                                              "compute holds).", show_default=False,
                                                              rich_help_panel="Search")] = None,
    sampling: Annotated[str | None, typer.Option(help="random, grid (choices only) or bayesian (default).",
                                                 show_default=False, rich_help_panel="Search")] = None,
    early_termination: Annotated[str | None, typer.Option(help="Stop trials that are behind: median (default), "
                                                          "hyperband or none.", show_default=False,
                                                          rich_help_panel="Search")] = None,
    evaluation_interval: Annotated[int | None, typer.Option(help="Apply early termination every N epochs "
                                                            "(default 1).", show_default=False,
                                                            rich_help_panel="Search")] = None,
    delay_evaluation: Annotated[int | None, typer.Option(help="Apply early termination from epoch N on "
                                                         "(default 0).", show_default=False,
                                                         rich_help_panel="Search")] = None,
) -> None:
    """Train an image classifier and write bestModel.onnx, bestModelMap.json, MLModel.zip and the two projects."""
    if resume is not None:
        _resume_here(resume, output)
        return
    recipe_settings = {
        "data": data, "name": name, "epochs": epochs, "time_budget": time_budget, "image_size": image_size,
        "batch_size": batch_size, "architecture": architecture, "weights": weights, "mode": mode,
        "validation_fraction": validation_fraction, "validation_data": validation_data, "seed": seed,
        "precision": precision, "processes": processes, "hflip": hflip, "compile": compile,
        "class_weights": class_weights, "from_run": from_run, "from_model": from_model, "task": task}
    options = {"max_trials": max_trials, "max_concurrent_trials": max_concurrent_trials, "sampling": sampling,
               "early_termination": early_termination, "evaluation_interval": evaluation_interval,
               "delay_evaluation": delay_evaluation}
    with faces() as (s, client):
        settings = sweep.sweep_settings(search, **options)
        if client is not None:  # a client of a remote server: through its API, on a data asset
            submitted = _submit_remote(s, client, recipe_settings, recipe, settings, workspace, experiment,
                                       compute, idempotency_key)
        else:
            config = submit.recipe_from(recipe_settings, recipe)
            submitted = submit.submit(s, config, workspace=workspace, experiment=experiment, compute=compute,
                                      idempotency_key=idempotency_key, sweep=settings)
        _say_submitted(submitted)
        if not detach:
            _finish(s, _follow(s, submitted.run.id, client), output, client)


def _submit_remote(services: Services, client: Client, recipe_settings: dict[str, Any], recipe_file: Path | None,
                   settings: SweepSettings | None, workspace: str | None, experiment: str | None, compute: str,
                   idempotency_key: str | None) -> Submitted:
    """Queue the training on the server; a local folder is uploaded as a data asset first (resumable;
    unchanged, nothing is sent), with a progress bar."""
    recipe_settings = remote.sendable(recipe_settings, recipe_file)  # before the progress bar: errors stay one line
    folder = remote.local_data(recipe_settings)
    if folder is not None:
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task(f"Uploading {folder}", total=None)
            recipe_settings, uploaded = remote.upload_data(
                services, client, recipe_settings, workspace,
                on_upload=lambda done, total: bar.update(task, completed=done, total=total))
        if uploaded is not None:
            err_console.print(f"Data {folder} is the data asset {uploaded.version.ref} on {client.url}"
                              f"{'' if uploaded.created else ' (unchanged, not sent again)'}.", highlight=False)
    return remote.submit_training(services, client, recipe_settings, workspace=workspace, experiment=experiment,
                                  compute=compute, idempotency_key=idempotency_key, sweep=settings)


def _say_submitted(submitted: Submitted) -> None:
    run = submitted.run
    if submitted.made is not None:
        err_console.print(f"[dim]Made workspace '{submitted.workspace}' with the local compute "
                          f"'{submitted.made.name}' (size {submitted.made.size}, {submitted.made.state}).[/]",
                          highlight=False)
    console.print(f"Run [bold]{run.id}[/] queued on compute [bold]{run.compute_name}[/] ({run.compute_size}, "
                  f"{run.priority}), workspace {submitted.workspace}, experiment {run.experiment_name}.",
                  highlight=False, soft_wrap=True)
    if submitted.portal_url:
        console.print(f"Monitor current run: {submitted.portal_url}", highlight=False, soft_wrap=True)


def _follow(services: Services, run_id: str, client: Client | None) -> e.Run:
    """Show the run live until it ends; Ctrl-C cancels it (the best model so far is still exported)."""
    previous = signal.getsignal(signal.SIGINT)
    canceling = False

    def on_interrupt(signum: int, frame: Any) -> None:
        nonlocal canceling
        if canceling:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        canceling = True
        runs.cancel(services, run_id, client)
        err_console.print("Canceling: the best model so far is being exported. Press Ctrl-C again to stop "
                          f"watching (run {run_id} then ends on its own).")

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        with ProgressDisplay() as display:
            return runs.wait_for(services, run_id, on_event=display.show, client=client)
    finally:
        signal.signal(signal.SIGINT, previous)


def _finish(services: Services, run: e.Run, output: Path, client: Client | None) -> None:
    if run.status not in (e.COMPLETED, e.CANCELED) or not run.best_metrics:
        fail(f"run {run.id} ended {run.status}: {run.error or run.status_reason}", code=1)
    metrics = runs.evaluation(services, run, client)
    if run.is_sweep:
        print_leaderboard(runs.trials(services, run, client))
    print_summary(metrics, runs.download(services, run.id, output, client), metrics.get("stopped", run.status.lower()))
    print_data_report(runs.data_report(services, run.id, client))


def _resume_here(checkpoint: Path, output: Path) -> None:
    """Continue a training from its checkpoint in this process (no store, no agent)."""
    # Deliberately here: the engine imports torch (about 2 s), which only this way of training needs.
    from modelbuilder.training.engine import run_training

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = get_settings().resolved_home / "local-runs" / stamp
    with ProgressDisplay() as display:
        result = run_training(TrainConfig(data=""), run_dir, display, resume=checkpoint)
    print_summary(result.metrics, copy_results(result.run_dir, result.name, output), result.stopped)


def register(app: typer.Typer) -> None:
    app.command()(train)
