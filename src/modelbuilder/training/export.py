"""ONNX export that always verifies against PyTorch before the file is recorded.

The exported graph takes float32 RGB in [0, 1], NCHW, with a dynamic batch, and returns logits; the
normalisation is inside it (see `model.Classifier`). After export, onnxruntime and PyTorch classify
the same validation images; unless top-1 is identical and probabilities agree within 1e-4, the file
is deleted and the run fails with the numbers.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from modelbuilder.errors import ExportCheckFailed
from modelbuilder.results.runtime import softmax

INPUT_NAME, OUTPUT_NAME = "image", "logits"
MAX_ABS_PROB_DIFF = 1e-4


@dataclass(frozen=True)
class ExportCheck:
    images: int
    top1_agreement: float
    max_abs_prob_diff: float

    def to_dict(self) -> dict[str, float]:
        return {"images": self.images, "top1_agreement": self.top1_agreement,
                "max_abs_prob_diff": self.max_abs_prob_diff}


def warm_exporter() -> None:
    """Build the exporter's table of ONNX functions once per process (and before the fork server forks).

    torch.onnx rebuilds that table from onnxscript's sources on every export: about 2 s of parsing on a
    small CPU, the same every time. Its builder is wrapped in a cache; the table is only read.
    """
    try:  # a private module of torch, so imported where its absence can be survived
        from torch.onnx._internal.exporter import _registration
    except ImportError:  # another torch layout: exports still work, just without the reuse
        return
    apis = getattr(_registration, "onnxscript_apis", None)
    build = getattr(apis, "get_torchlib_ops", None)
    if build is None:
        return
    if not hasattr(build, "cache_info"):
        build = functools.cache(build)
        apis.get_torchlib_ops = build  # type: ignore[union-attr]
    build()


def export_onnx(model: torch.nn.Module, image_size: int, path: Path, opset: int = 18) -> Path:
    """Write `model` (CPU, float32, eval mode) to `path` atomically as one self-contained file."""
    warm_exporter()
    model = model.to("cpu").to(memory_format=torch.contiguous_format).float().eval()
    example = torch.rand(2, 3, image_size, image_size)  # a batch of 2, or the batch size gets fixed
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), str(tmp), dynamo=True, external_data=False, verbose=False,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
        except Exception:  # noqa: BLE001 - fall back to the TorchScript exporter, then verify either way
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=17,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    os.replace(tmp, path)
    return path


def verify_onnx(path: Path, model: torch.nn.Module, images: torch.Tensor) -> ExportCheck:
    """Compare onnxruntime with PyTorch eager (float32) on `images` (N x 3 x H x W in [0, 1])."""
    model = model.to("cpu").to(memory_format=torch.contiguous_format).float().eval()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = softmax(model(images).numpy())
    got = softmax(session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy().astype(np.float32)})[0])
    check = ExportCheck(len(images), float((expected.argmax(1) == got.argmax(1)).mean()),
                        float(np.abs(expected - got).max()))
    if check.top1_agreement < 1.0 or check.max_abs_prob_diff >= MAX_ABS_PROB_DIFF:
        path.unlink(missing_ok=True)
        raise ExportCheckFailed(
            f"The ONNX model disagrees with PyTorch on {check.images} validation images: top-1 agreement "
            f"{check.top1_agreement:.4f} (needs 1.0), max |Δprob| {check.max_abs_prob_diff:.2e} "
            f"(needs < {MAX_ABS_PROB_DIFF:.0e}).",
            "report this with the run's recipe; meanwhile try another --architecture.")
    return check
