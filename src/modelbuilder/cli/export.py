"""`modelbuilder export`: an int8 version of a trained model, with its accuracy next to the float one's.

The source is a finished run (its id) or an MLModel.zip. A run brings its own validation images: its
data is found and split again exactly as training did (the same recipe, seed and decoded cache). A bare
MLModel.zip needs `--validation-data`, a folder with one sub-folder per label.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from modelbuilder.errors import DataError, InvalidInput, NotFound


class Quantization(StrEnum):
    int8 = "int8"


@dataclass(frozen=True)
class Source:
    """A float model to quantize: the ONNX file, its package and where the results go by default."""

    onnx: Path
    package: Any  # runtime.ModelPackage
    folder: Path
    run_dir: Path | None


def _resolve(source: str, workdir: Path) -> Source:
    from modelbuilder.config import get_settings
    from modelbuilder.core.artifacts import ArtifactStore
    from modelbuilder.core.entities import RUN_ID
    from modelbuilder.results.runtime import MODEL_FILE, read_model_package

    if RUN_ID.fullmatch(source):
        run_dir = ArtifactStore(get_settings().artifacts).run_dir(source)
        onnx, zip_path = run_dir / MODEL_FILE, run_dir / "MLModel.zip"
        if not (onnx.is_file() and zip_path.is_file() and (run_dir / "recipe.json").is_file()):
            raise NotFound(f"Run {source} has no finished model in {run_dir}.",
                           f"wait until it completes ('modelbuilder runs show {source}'), or pass an MLModel.zip.")
        return Source(onnx, read_model_package(zip_path), run_dir, run_dir)
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidInput(f"{source!r} is neither a run id nor an existing MLModel.zip.",
                           "pass a run id (like run-0123456789ab) or the path of an MLModel.zip.")
    package = read_model_package(path)
    onnx = workdir / MODEL_FILE
    onnx.write_bytes(package.onnx)
    return Source(onnx, package, path if path.is_dir() else path.parent, None)


def _run_validation(run_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The run's validation images (center crops), re-found and re-split exactly as training did."""
    from modelbuilder.config import get_settings
    from modelbuilder.results.runtime import center_crop
    from modelbuilder.training.engine import prepare_data
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    recipe = TrainConfig.from_dict(json.loads((run_dir / "recipe.json").read_text()))
    try:
        data = prepare_data(recipe, get_settings().decoded_cache, MemoryReporter())
    except DataError as exc:
        raise DataError(f"The run's data cannot be read again: {exc.message}",
                        "put the data back where the run found it, or pass --validation-data FOLDER.") from None
    records = data.val.cache.read(data.val.records)
    crops = np.stack([center_crop(r, data.image_size) for r in records])
    return crops, data.val.targets, data.labels


def _folder_validation(folder: Path, spec: Any, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images of a folder-per-label set, preprocessed as the runtime does; unreadable files are skipped."""
    from modelbuilder.results.runtime import InvalidImageError, preprocess, usable_cores
    from modelbuilder.training.data import discover

    samples, _ = discover(folder)
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        raise DataError(f"--validation-data has labels the model does not know: {', '.join(unknown[:5])}.",
                        f"use sub-folders named after the model's labels ({', '.join(labels[:5])}).")

    def load(path: Path) -> np.ndarray | None:
        try:
            return preprocess(path, spec)
        except InvalidImageError:
            return None

    with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
        crops = list(pool.map(load, [s.path for s in samples]))
    kept = [(c, labels.index(s.label)) for c, s in zip(crops, samples, strict=True) if c is not None]
    if not kept:
        raise DataError(f"No readable images in {str(folder)!r}.", "pass a folder of images, one sub-folder per label.")
    return np.stack([c for c, _ in kept]), np.array([t for _, t in kept], dtype=np.int64)


def export(
    source: Annotated[str, typer.Argument(help="A finished run's id (run-0123456789ab) or an MLModel.zip.",
                                          show_default=False)],
    quantize: Annotated[Quantization, typer.Option("--quantize", help="What to write: int8 (static, calibrated "
                                                   "on validation images).")] = Quantization.int8,
    output: Annotated[Path | None, typer.Option(help="Folder for bestModel.int8.onnx and MLModel.int8.zip "
                                                "(default: beside the float model).", show_default=False)] = None,
    validation_data: Annotated[Path | None, typer.Option(
        help="Folder with one sub-folder per label, to calibrate on and to measure accuracy (required for an "
             "MLModel.zip; a run uses its own validation images).", show_default=False)] = None,
    calibration_images: Annotated[int, typer.Option(help="Most validation images to calibrate on.")] = 200,
) -> None:
    """Write an int8 model (ONNX Runtime quantization) beside the float one and compare the two."""
    from modelbuilder import names
    from modelbuilder.results.quantize import export_int8

    names.positive_int(calibration_images, "--calibration-images", maximum=100_000)
    with tempfile.TemporaryDirectory(prefix="modelbuilder-export-") as tmp:
        src = _resolve(source, Path(tmp))
        package = src.package
        if validation_data is not None:
            if not validation_data.is_dir():
                raise InvalidInput(f"--validation-data {str(validation_data)!r} is not a folder.",
                                   "pass a folder with one sub-folder per label.")
            crops, targets = _folder_validation(validation_data, package.preprocess, package.labels)
        elif src.run_dir is not None:
            crops, targets, labels = _run_validation(src.run_dir)
            if labels != package.labels:
                raise DataError(f"The run's data now has labels {labels}, its model {package.labels}.",
                                "pass --validation-data with images of the model's labels.")
        else:
            raise InvalidInput("An MLModel.zip brings no validation images to calibrate on.",
                               "pass --validation-data FOLDER (one sub-folder per label).")
        with _steps("Quantizing") as step:
            result = export_int8(src.onnx, (output or src.folder).expanduser(), crops, targets, package.labels,
                                 package.preprocess, package.pipeline.get("metrics") or {},
                                 package.pipeline["input"]["name"], package.pipeline["output"]["name"],
                                 calibration_limit=calibration_images, on_step=step)
    _print(result, quantize)


@contextlib.contextmanager
def _steps(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a terminal; one line per step elsewhere (logs, CI)."""
    from modelbuilder.cli.console import console

    if not console.is_terminal:
        yield lambda text: console.print(f"{title}: {text} ...", highlight=False)
        return
    with console.status(f"{title} ...") as status:
        yield lambda text: status.update(f"{title}: {text} ...")


def _print(result: Any, quantize: Quantization) -> None:
    from rich.table import Table

    from modelbuilder.cli.console import console

    table = Table("", "float32", str(quantize), header_style="bold")
    table.add_row("validation accuracy", f"{result.float_accuracy:.4f}", f"{result.int8_accuracy:.4f}")
    table.add_row("ms per image (batch 32)", f"{result.float_ms_per_image:.1f}", f"{result.int8_ms_per_image:.1f}")
    table.add_row("model size (MB)", f"{result.float_bytes / 1e6:.1f}", f"{result.int8_bytes / 1e6:.1f}")
    console.print(table)
    bits = "7-bit weights: this CPU has no VNNI" if result.reduce_range else "8-bit weights"
    console.print(f"{quantize} is {result.speedup:.2f}x as fast, accuracy {result.accuracy_delta:+.4f} on "
                  f"{result.images} validation images (calibrated on {result.calibration_images}; {bits}).",
                  highlight=False)
    if result.calibration_scores:
        agreement = ", ".join(f"{name} {score['top1_agreement']:.4f}"
                              for name, score in result.calibration_scores.items())
        console.print(f"Activation ranges: {result.calibration} (top-1 agreement with float on the calibration "
                      f"images: {agreement}).", highlight=False)
    console.print(f"Wrote {result.onnx} and {result.package}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(export)
