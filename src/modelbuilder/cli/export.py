"""`modelbuilder export`: an int8 version of a trained model, with its accuracy next to the float one's.

The work is the application layer's (`sdk.export`, also behind the SDK's `Run.export_int8` and
`POST /api/v1/runs/{id}/export`); this command reads its options, shows the steps, prints the comparison.
A client of a remote server (MODELBUILDER_SERVER_URL without MODELBUILDER_DB_URL) has a run exported by the
server, into the run's folder there; --output fetches a copy of the two files.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from modelbuilder.cli._common import faces
from modelbuilder.cli.console import console
from modelbuilder.core.entities import RUN_ID
from modelbuilder.sdk import export as exports

if TYPE_CHECKING:
    from modelbuilder.results.quantize import Int8Export


class Quantization(StrEnum):
    int8 = "int8"


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
    calibration_images: Annotated[int, typer.Option(help="Most validation images to calibrate on.")]
    = exports.CALIBRATION_IMAGES,
) -> None:
    """Write an int8 model (ONNX Runtime quantization) beside the float one and compare the two."""
    with faces() as (s, client), _steps("Quantizing") as step:
        result = exports.export_int8(s, source, output=output, validation_data=validation_data,
                                     calibration_images=calibration_images, on_step=step, client=client)
    on_server = client is not None and output is None and RUN_ID.fullmatch(source)
    _print(result, quantize, f" in the folder of {source} on the server" if on_server else "")


@contextlib.contextmanager
def _steps(title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a terminal; one line per step elsewhere (logs, CI)."""
    if not console.is_terminal:
        yield lambda text: console.print(f"{title}: {text} ...", highlight=False)
        return
    with console.status(f"{title} ...") as status:
        yield lambda text: status.update(f"{title}: {text} ...")


def _print(result: Int8Export, quantize: Quantization, where: str = "") -> None:
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
    console.print(f"Wrote {result.onnx} and {result.package}{where}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(export)
