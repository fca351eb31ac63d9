"""`modelbuilder train`: one command from a folder of images to a ready result.

The run is submitted to the store and executed by an agent on its compute, in a worker process, like
any other run: the command follows it live from the store, and on Ctrl-C cancels it cleanly (the best
model so far is still exported). Without a server running, the command runs an agent itself while it
waits; with `--detach` it only submits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from modelbuilder import names
from modelbuilder.results.bundle import copy_results

DATA_HELP = "A folder with one sub-folder per label, or a .tsv/.csv manifest with ImageSource and Label columns."


DATA_PATHS = ("data", "validation_data")


def recipe_from_options(**options: Any) -> Any:
    """Flags > YAML recipe file > defaults, validated by TrainConfig itself.

    Data paths given as flags are relative to the current folder; those written in the recipe file
    are relative to the file's folder (so a recipe kept next to its data works from anywhere).
    """
    from modelbuilder.training.recipe import TrainConfig

    recipe_file = options.pop("recipe")
    budget = options.pop("time_budget")
    for key in DATA_PATHS:
        if options.get(key) is not None:
            options[key] = str(Path(options[key]).expanduser().resolve())
    if budget is not None:
        options["time_budget_s"] = names.duration_seconds(budget)
    config = TrainConfig.from_sources(recipe_file, **options)
    if recipe_file is None:
        return config
    base = recipe_file.expanduser().resolve().parent
    from_file = {key: str((base / Path(value).expanduser()).resolve())
                 for key in DATA_PATHS if isinstance(value := getattr(config, key), str) and options.get(key) is None}
    return config.with_(**from_file)


def print_summary(metrics: dict[str, Any], placed: dict[str, Path], stopped: str) -> None:
    from rich.table import Table

    from modelbuilder.cli.console import console, fmt_seconds

    console.print(
        f"\n[bold green]Done[/] ({stopped.replace('_', ' ')}): validation accuracy [bold]{metrics['accuracy']:.4f}[/], "
        f"macro F1 {metrics['macro_f1']:.4f}, best epoch {metrics['best_epoch']} of {metrics['epochs_run']}, "
        f"{metrics['images_per_s']:.0f} img/s, training time {fmt_seconds(metrics['training_seconds'])}.",
        highlight=False)
    table = Table("output", "where", show_header=True, header_style="bold")
    for key, path in placed.items():
        table.add_row(key, str(path))
    console.print(table)


def default_experiment(data: str) -> str:
    """An experiment name from the data folder ('my pets' -> 'my-pets'), valid by construction."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(data).stem).strip("-_")[:36]
    return slug if len(slug) >= 3 and slug[0].isalnum() else "default"


def train(
    data: Annotated[Path | None, typer.Option(help=DATA_HELP, show_default=False)] = None,
    name: Annotated[str | None, typer.Option(help="Name of the generated <Name>.ConsoleApp and <Name>.Model "
                                             "(default: from the data folder's name).", show_default=False)] = None,
    output: Annotated[Path, typer.Option(help="Folder that receives <Name>.ConsoleApp, <Name>.Model and the "
                                         "three assets.")] = Path("."),
    workspace: Annotated[str | None, typer.Option(help="Workspace (default: the one in use, else 'default').",
                                                  show_default=False)] = None,
    experiment: Annotated[str | None, typer.Option(help="Experiment; the first run registers it (default: "
                                                   "from the data folder's name).", show_default=False)] = None,
    compute: Annotated[str, typer.Option(help="Compute to train on.")] = "local",
    epochs: Annotated[int | None, typer.Option(help="Most epochs to train (default 15).", show_default=False)] = None,
    time_budget: Annotated[str | None, typer.Option(help="Stop training after this long, keeping the best "
                                                    "(e.g. 10m, 1h30m).", show_default=False)] = None,
    image_size: Annotated[int | None, typer.Option(help="Input size in pixels (default: from the data, 32 to "
                                                   "224).", show_default=False)] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per step (default: from the data, 16 to 64).",
                                                   show_default=False)] = None,
    architecture: Annotated[str | None, typer.Option(help="resnet50 (default), resnet18, mobilenet_v3_large, "
                                                     "tiny.", show_default=False)] = None,
    weights: Annotated[str | None, typer.Option(help="auto (ImageNet weights if available, default), none, or "
                                                "a state dict file.", show_default=False)] = None,
    mode: Annotated[str | None, typer.Option(help="auto (default), full, or head (train only the new head "
                                             "on frozen pretrained features).", show_default=False)] = None,
    validation_fraction: Annotated[float | None, typer.Option(help="Share of each label held out for "
                                                              "validation (default 0.2).", show_default=False)] = None,
    validation_data: Annotated[Path | None, typer.Option(help="Separate validation data (same layout as "
                                                         "--data).", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split, order and augmentation (default 0).",
                                             show_default=False)] = None,
    hflip: Annotated[bool | None, typer.Option("--hflip/--no-hflip", help="Random horizontal flips while "
                                               "training (default on; turn off where a mirrored image means "
                                               "something else: digits, text).", show_default=False)] = None,
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
    resume: Annotated[Path | None, typer.Option(help="Continue a training from a checkpoint file "
                                                "(checkpoints/last.pt), here in this process.",
                                                show_default=False)] = None,
) -> None:
    """Train an image classifier and write bestModel.onnx, bestModelMap.json, MLModel.zip and the two projects."""
    if resume is not None:
        _resume_here(resume, output)
        return
    config = recipe_from_options(
        data=data, name=name, epochs=epochs, time_budget=time_budget, image_size=image_size,
        batch_size=batch_size, architecture=architecture, weights=weights, mode=mode,
        validation_fraction=validation_fraction, validation_data=validation_data, seed=seed, precision=precision,
        processes=processes, hflip=hflip, compile=compile, recipe=recipe)
    config = config.with_(name=config.name or names.project_name_from(Path(config.data).stem))
    _check_data(config)
    from modelbuilder.cli.runs import follow_run, submit_run

    run, runs, store = submit_run(config, workspace, experiment or default_experiment(config.data), compute,
                                  idempotency_key)
    if detach:
        return
    follow_run(run.id, runs, store, output)


def _check_data(config: Any) -> None:
    """The mistakes that need no decoding (missing path, no images, one label, a bad manifest), now
    rather than after the run was queued."""
    from modelbuilder.training import data as data_mod

    for source in filter(None, (config.data, config.validation_data)):
        samples, _ = data_mod.discover(source)
        if source == config.data:
            data_mod.check_labels(samples, source)


def _resume_here(checkpoint: Path, output: Path) -> None:
    import datetime

    from modelbuilder.cli.console import ProgressDisplay
    from modelbuilder.config import get_settings
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = get_settings().resolved_home / "local-runs" / stamp
    with ProgressDisplay() as display:
        result = run_training(TrainConfig(data=""), run_dir, display, resume=checkpoint)
    print_summary(result.metrics, copy_results(result.run_dir, result.name, output), result.stopped)


def register(app: typer.Typer) -> None:
    app.command()(train)
