"""Exporting an int8 version of a trained model, with its accuracy next to the float one's.

The source is a finished run (its id) or an MLModel.zip. A run brings its own validation images: its
data is found and split again exactly as training did (the same recipe, seed and decoded cache). A bare
MLModel.zip needs `validation_data`, a folder with one sub-folder per label. The int8 files go beside
the float model (into the run's folder, where they are recorded as its artifacts), or into `output`.
`modelbuilder export`, the SDK's `Run.export_int8` and `POST /api/v1/runs/{id}/export` call `export_int8`.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelbuilder import names
from modelbuilder.core.entities import RUN_ID
from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, DataError, InvalidInput, NotFound, step
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE, MODEL_FILE, RECIPE_FILE, ZIP_FILE
from modelbuilder.results.runtime import (
    InvalidImageError,
    ModelPackage,
    Preprocess,
    center_crop,
    preprocess,
    read_model_package,
    usable_cores,
)
from modelbuilder.sdk import remote_models, results
from modelbuilder.sdk.client import Client
from modelbuilder.training.data import discover
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter

if TYPE_CHECKING:
    from modelbuilder.results.quantize import Int8Export

CALIBRATION_IMAGES = 200  # the most validation images to calibrate on, by default
_GIVE = {"give": step("give_validation_data")}
_UNDER_WAY: set[Path] = set()  # output folders an export of this process is writing into
_UNDER_WAY_LOCK = threading.Lock()


@dataclass(frozen=True)
class FloatModel:
    """A float model to quantize: its ONNX file, its package, where the results go by default, and the
    run it comes from (None for a bare MLModel.zip)."""

    onnx: Path
    package: ModelPackage
    folder: Path
    run_id: str | None


def float_model(services: Services, source: str, workdir: Path) -> FloatModel:
    """The model of a finished run (`source` is its id) or of an MLModel.zip (`source` is its path)."""
    if RUN_ID.fullmatch(source):
        run_dir = results.require_results(services, services.runs.get(source))  # a missing run: NotFound
        onnx, zip_path = run_dir / MODEL_FILE, run_dir / ZIP_FILE
        if not (onnx.is_file() and zip_path.is_file() and (run_dir / RECIPE_FILE).is_file()):
            raise NotFound(f"Run {source} has no finished model in {run_dir}.",
                           "wait until it is Completed ({follow}), or export an MLModel.zip instead.",
                           {"follow": step("follow_run", run=source)})
        return FloatModel(onnx, read_model_package(zip_path), run_dir, source)
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidInput(f"{source!r} is neither a run id nor an existing MLModel.zip.",
                           "give a run id (like run-0123456789ab) or the path of an MLModel.zip.")
    package = read_model_package(path)
    onnx = workdir / MODEL_FILE
    onnx.write_bytes(package.onnx)
    return FloatModel(onnx, package, path if path.is_dir() else path.parent, None)


@dataclass(frozen=True)
class ValidationImages:
    """Validation images as files and as the model sees them (N x crop x crop x 3 uint8), with their labels."""

    paths: list[Path]
    crops: np.ndarray
    targets: np.ndarray  # indices into `labels`
    labels: list[str]


def run_validation(recipe: TrainConfig, cache_root: Path) -> ValidationImages:
    """A run's validation images, found, decoded (through the decoded cache) and split again exactly as its
    training did: its validation data, or the same stratified split of its data (recipe, seed)."""
    # Deliberately here: the engine's data preparation imports torch (about 2 s), which only this step of
    # the application layer needs; every command of the CLI imports this module.
    from modelbuilder.training.engine import prepare_data

    try:
        data = prepare_data(recipe, cache_root, MemoryReporter(), check_duplicates=False)
        samples, _ = discover(recipe.validation_data or recipe.data)  # the order the cache was built in
    except DataError as exc:
        raise DataError(f"The run's data cannot be read again: {exc.message}",
                        "put the data back where the run found it, or give validation data ({give}).",
                        _GIVE) from None
    records = data.val.cache.read(data.val.records)
    crops = np.stack([center_crop(r, data.image_size) for r in records])
    paths = [samples[int(i)].path for i in data.val.records]
    return ValidationImages(paths, crops, np.asarray(data.val.targets), data.labels)


def folder_validation(folder: Path, spec: Preprocess, labels: list[str]) -> ValidationImages:
    """A folder-per-label set, preprocessed as the runtime does; unreadable files are skipped."""
    if not folder.is_dir():
        raise InvalidInput(f"The validation data {str(folder)!r} is not a folder.",
                           "give a folder with one sub-folder per label ({give}).", _GIVE)
    samples, _ = discover(folder)
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        raise DataError(f"The validation data has labels the model does not know: {', '.join(unknown[:5])}.",
                        f"use sub-folders named after the model's labels ({', '.join(labels[:5])}).")

    def load(path: Path) -> np.ndarray | None:
        try:
            return preprocess(path, spec)
        except InvalidImageError:
            return None

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        crops = list(pool.map(load, [s.path for s in samples]))
    kept = [(c, s) for c, s in zip(crops, samples, strict=True) if c is not None]
    if not kept:
        raise DataError(f"No readable images in {str(folder)!r}.", "give a folder of images, one sub-folder per label.")
    return ValidationImages([s.path for _, s in kept], np.stack([c for c, _ in kept]),
                            np.array([labels.index(s.label) for _, s in kept], dtype=np.int64), labels)


def export_int8(services: Services, source: str, *, output: str | Path | None = None,
                validation_data: str | Path | None = None, calibration_images: int = CALIBRATION_IMAGES,
                on_step: Callable[[str], None] | None = None, client: Client | None = None) -> Int8Export:
    """Write bestModel.int8.onnx and MLModel.int8.zip for `source` and measure both models (see above).

    `on_step` hears what is being done (the steps take from seconds to a minute or two). With a `client` (a
    server and no store shared with it), a run is exported by the server, into the run's folder there
    (`POST /runs/{id}/export`), and `output` gets a copy of the two files; an MLModel.zip is exported here."""
    # Deliberately here: the quantizer imports onnx and onnxruntime's quantization tools (about 0.5 s),
    # which only an export needs; every command of the CLI imports this module.
    from modelbuilder.results.quantize import export_int8 as quantize_and_measure

    names.positive_int(calibration_images, "calibration_images", maximum=100_000)
    if client is not None and RUN_ID.fullmatch(source):
        if validation_data is not None:
            raise InvalidInput("A run on a server is calibrated on its own validation images there; the server "
                               "cannot read a folder on this machine.", "leave out --validation-data.")
        if on_step is not None:
            on_step(f"on the server {client.url}")
        return remote_models.ModelsAPI(client).export_int8(source, calibration_images, output)
    with tempfile.TemporaryDirectory(prefix="modelbuilder-export-") as tmp:
        model = float_model(services, source, Path(tmp))
        package = model.package
        if package.multilabel:
            raise InvalidInput("The int8 export is of multi-class models; this one is multi-label.",
                               "use its float MLModel.zip (bestModel.onnx), which keeps its per-label thresholds.")
        if validation_data is not None:
            images = folder_validation(Path(validation_data).expanduser(), package.preprocess, package.labels)
        elif model.run_id is not None:
            recipe = TrainConfig.from_dict(json.loads((model.folder / RECIPE_FILE).read_text()))
            images = run_validation(recipe, services.settings.decoded_cache)
            if images.labels != package.labels:
                raise DataError(f"The run's data now has labels {images.labels}, its model {package.labels}.",
                                "give validation data with images of the model's labels ({give}).", _GIVE)
        else:
            raise InvalidInput("An MLModel.zip brings no validation images to calibrate on.",
                               "give validation data: a folder with one sub-folder per label ({give}).", _GIVE)
        out_dir = Path(output).expanduser().resolve() if output is not None else model.folder
        with _only_export_into(out_dir):
            result = quantize_and_measure(
                model.onnx, out_dir, images.crops, images.targets, package.labels, package.preprocess,
                package.pipeline.get("metrics") or {}, package.pipeline["input"]["name"],
                package.pipeline["output"]["name"], calibration_limit=calibration_images, on_step=on_step)
    if model.run_id is not None and out_dir == model.folder:
        _record(services, model.run_id)
    return result


@contextmanager
def _only_export_into(folder: Path) -> Iterator[None]:
    """One export at a time into a folder (of this process): two would write the same files."""
    with _UNDER_WAY_LOCK:
        if folder in _UNDER_WAY:
            raise Conflict(f"An int8 export into {str(folder)!r} is under way.",
                           "wait until it is done, then try again.")
        _UNDER_WAY.add(folder)
    try:
        yield
    finally:
        with _UNDER_WAY_LOCK:
            _UNDER_WAY.discard(folder)


def _record(services: Services, run_id: str) -> None:
    """List the int8 files among the run's artifacts (with their size and SHA-256)."""
    written = [services.artifacts.describe(run_id, relpath) for relpath in (INT8_MODEL_FILE, INT8_ZIP_FILE)]
    try:
        services.recorder.record_artifacts(run_id, written)
    except NotFound:
        pass  # a run folder this store does not know (copied from another home): its files are all there is
