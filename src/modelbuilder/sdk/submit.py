"""Submitting a run: the recipe from its sources, the full data check, the workspace, idempotency.

The CLI's `train`, the SDK's `Experiment.submit` and `POST /api/v1/runs` all call `submit`, so the same
submission gets the same run or the same one-line error from each. Every mistake that can be found
without training is found here, before anything is queued: a bad recipe value, a missing path, a
bad manifest, no images, one label only, a set none of whose images can be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuilder import names
from modelbuilder.config import run_url, running_server
from modelbuilder.core import entities as e
from modelbuilder.core.artifacts import file_sha256
from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput, NotFound, WeightsError
from modelbuilder.results.files import BEST_CHECKPOINT, CHECKPOINT_DIR, RESULT_MARKER, ZIP_FILE
from modelbuilder.sdk import data
from modelbuilder.sdk.results import require_results
from modelbuilder.training import data as data_mod
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.search import SweepSettings

DATA_PATHS = ("data", "validation_data", "from_model")  # paths a recipe names, made absolute
DEFAULT_EXPERIMENT = "default"


def recipe_from(settings: Mapping[str, Any], recipe_file: str | Path | None = None, *,
                assets_by_name: bool = False) -> TrainConfig:
    """The recipe: `settings` (flags, keyword arguments, a request's body) > a YAML file > defaults.

    A setting that is None is not given. `time_budget` takes a duration ('10m', '1h30m') for
    `time_budget_s`. Data paths given as settings are relative to the current folder; those written in
    the file are relative to the file's folder, so a recipe kept next to its data works from anywhere.
    The project name defaults to one made from the data folder's name (or the data asset's).
    `data` that names a data asset (pets, pets:2) stays a name, resolved at submission, unless a file or
    folder of that name exists here; with `assets_by_name` (the API, whose paths are absolute) it always
    stays a name.
    """
    given = {key: value for key, value in settings.items() if value is not None}
    if "time_budget" in given:
        given["time_budget_s"] = names.duration_seconds(given.pop("time_budget"))
    for key in DATA_PATHS:
        if key == "data" and (names.looks_like_data_ref(given.get(key)) if assets_by_name
                              else is_data_asset(given.get(key))):
            given[key] = str(given[key])  # a data asset's name, resolved at submission
        elif key in given:
            given[key] = _absolute(given[key], Path.cwd())
    config = TrainConfig.from_sources(recipe_file, **given)
    if recipe_file is not None:
        base = Path(recipe_file).expanduser().resolve().parent
        config = config.with_(**{key: _absolute(getattr(config, key), base) for key in DATA_PATHS
                                 if key not in given and isinstance(getattr(config, key), str)})
    source = names.data_ref(config.data)[0] if names_asset(config.data) else Path(config.data).stem
    return config.with_(name=config.name or names.project_name_from(source))


def names_asset(data: str) -> bool:
    """Whether a recipe's `data` names a data asset: every path in a recipe is absolute (`recipe_from`), so a
    relative one in the shape of a reference is a name."""
    return not Path(data).is_absolute() and names.looks_like_data_ref(data)


def is_data_asset(data: Any) -> bool:
    """Whether `data` names a data asset (pets, pets:2) rather than a path: it has the shape of a reference
    and no file or folder of that name exists here (a local path still wins)."""
    return (isinstance(data, str | Path) and names.looks_like_data_ref(str(data))
            and not Path(str(data)).expanduser().exists())


def setting_error(key: str, value: Any) -> InvalidInput | None:
    """What the recipe itself says of `value` for the setting `key`, or None when it takes the value (a face
    that checks a value first, as the API's schema does, still gives the recipe's own error)."""
    try:
        TrainConfig.from_dict({"data": "", key: value})
    except InvalidInput as error:
        return error
    except (TypeError, ValueError):  # a value of another type than the setting's: the recipe cannot say
        return None
    return None


def _absolute(path: Any, base: Path) -> str:
    if not isinstance(path, str | Path):
        raise InvalidInput(f"A data path must be text, got {path!r}.", "give the path of a folder or a manifest.")
    return str((base / Path(path).expanduser()).resolve())


def check_data(recipe: TrainConfig) -> list[str]:
    """The training data's labels, once every mistake that needs no training is ruled out (see above)."""
    samples, _ = data_mod.discover(recipe.data)
    task = data_mod.task_of(samples, recipe.task)
    recipe.with_(task=task)  # what the recipe refuses for the data's task (multi-label: no class weights)
    data_mod.check_labels(samples, recipe.data, task)
    labels = data_mod.check_readable(samples, recipe.data)
    if recipe.validation_data:
        found, _ = data_mod.discover(recipe.validation_data)
        if not found:
            data_mod.check_labels(found, recipe.validation_data)  # says there are no images
    return labels


def starting_point(services: Services, recipe: TrainConfig) -> TrainConfig:
    """The recipe with the weights it starts from resolved to a checkpoint file (`from_model`), and the run they
    come from (`from_run`) where there is one. A run id is looked up in the store and its best checkpoint taken
    from the artifact store; a run's MLModel.zip or folder (or a checkpoint in it) means that run's best
    checkpoint; any other file is taken as a checkpoint, read by the engine."""
    if recipe.from_run and recipe.from_model:
        raise InvalidInput("Both a run and a model to start from are given.",
                           "give one of them: --from-run RUN_ID, or --from-model MLModel.zip or a checkpoint.")
    if recipe.from_run:
        run = services.runs.get(recipe.from_run)
        best = require_results(services, run) / BEST_CHECKPOINT
        if not best.is_file():
            raise NotFound(f"Run {run.id} has no {BEST_CHECKPOINT} to start from.",
                           "start from a run that trained on this host, or pass its checkpoint with --from-model.")
        return recipe.with_(from_model=str(best))
    if not recipe.from_model:
        return recipe
    path = Path(recipe.from_model)
    if not path.exists():
        raise WeightsError(f"The model to start from, {str(path)!r}, does not exist.",
                           "pass a run's MLModel.zip or checkpoints/best.pt, or --from-run with its id.")
    folder = path if path.is_dir() else path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
    if path.is_file() and path.suffix.lower() == ".zip" and not (folder / BEST_CHECKPOINT).is_file():
        runs = services.recorder.runs_with_artifact(ZIP_FILE, file_sha256(path))  # a copy of a run's result
        if runs:
            return starting_point(services, recipe.with_(from_model=None, from_run=runs[0]))
    if path.is_dir() or path.suffix.lower() == ".zip":
        if not (folder / RESULT_MARKER).is_file() or not (folder / BEST_CHECKPOINT).is_file():
            raise WeightsError(f"{str(path)!r} is not a finished run's model: its folder has no {BEST_CHECKPOINT} "
                               "and no run of this store made it (an MLModel.zip holds the ONNX model, which "
                               "cannot be trained on).",
                               "pass the MLModel.zip in a run's folder, the run's checkpoints/best.pt, or "
                               "--from-run with its id.")
        path = folder / BEST_CHECKPOINT
    stored = e.RUN_ID.fullmatch(folder.name) and services.artifacts.run_dir(folder.name) == folder
    return recipe.with_(from_model=str(path), from_run=folder.name if stored else None)


def default_experiment(data: str) -> str:
    """An experiment name from the data folder ('my pets' -> 'my-pets'), valid by construction."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(data).stem).strip("-_")[:36]
    return slug if len(slug) >= 3 and slug[0].isalnum() else DEFAULT_EXPERIMENT


@dataclass(frozen=True)
class Submitted:
    run: e.Run
    workspace: str
    made: e.Compute | None  # the default workspace's compute, when this submission made it
    portal_url: str | None  # the run's page, when a server serves this store


def submit(services: Services, recipe: TrainConfig, *, workspace: str | None = None, experiment: str | None = None,
           compute: str = "local", idempotency_key: str | None = None, sweep: SweepSettings | None = None) -> Submitted:
    """Check the data, then queue a run of `recipe` in `workspace` (see `WorkspaceService.in_use`), in
    `experiment` (default: named after the data) on `compute`. With `idempotency_key`, the same
    submission again returns the same run; a different one under the same key is refused. With `sweep`
    (`sdk.sweep.sweep_settings`) the run is a sweep's parent, whose trials try settings around `recipe`."""
    name, made = services.workspaces.in_use(workspace)
    asset = None
    if names_asset(recipe.data):  # trains on a data asset: its version's folder in the artifact store
        asset, manifest = data.training_data(services, recipe.data, name)
        recipe = recipe.with_(data=str(manifest))
    check_data(recipe)
    recipe = starting_point(services, recipe)
    run = services.runs.submit(name, experiment or default_experiment(asset.asset if asset else recipe.data), compute,
                               recipe.to_dict(), project_name=recipe.name, idempotency_key=idempotency_key,
                               sweep=sweep.to_dict() if sweep is not None else None,
                               data_asset=(asset.asset, asset.version) if asset is not None else None)
    server = running_server(services.settings)
    return Submitted(run, name, made, run_url(server, name, run.id) if server else None)
