"""Post-training int8 quantization of an exported model, and the numbers that say what it cost.

`quantize_int8` writes a static int8 model (onnxruntime.quantization) calibrated on real images. It
keeps the float model's contract: the same input and output names, float32 RGB in [0, 1] in, logits
out, so it drops into an MLModel.zip (and PredictionEngine) in place of the float model.

Choices, measured on a 2-core AVX2 CPU without VNNI with a ResNet50 at 224 px (float ONNX = 1.0x,
batch 32, interleaved runs on a quiet machine):
- QDQ format (2.18x), as onnxruntime recommends for its CPU kernels: it fuses each
  DequantizeLinear -> Conv -> QuantizeLinear group into one QLinearConv. QOperator, which writes those
  nodes directly, was no faster (2.11x); QDQ is also the portable one.
- uint8 activations, int8 weights per output channel: per-channel cost nothing measurable (per-tensor
  2.17x) and kept accuracy where per-tensor lost it (digits at 32 px: 0.763 float, 0.763 per-channel,
  0.727 per-tensor). Without VNNI, the u8 x s8 multiply-add of the int8 kernels can saturate its 16-bit
  intermediate sums, so there weights keep 7 bits (`reduce_range`; 8 bits: 0.721 on the same digits);
  with VNNI (AVX512-VNNI, AVX-VNNI, AMX) all 8 bits are used.
- MinMax calibration, two ways, and the better kept: onnxruntime adds ReduceMin/ReduceMax outputs to
  the graph, so calibrating keeps two numbers per tensor and batch, never the activations. A tensor's
  range is either the mean over the calibration batches (8 images each) of the batch's min and max
  ("averaged", `CalibMovingAverage`: one outlier image cannot widen the range and coarsen every other
  value) or the extremes over all images ("extremes"). Neither wins everywhere. Top-1 agreement with
  the float model over the validation images, averaged vs extremes: three ResNet50 digits models at
  32 px (359 images) 0.978 vs 0.916, 0.969 vs 0.955, 0.939 vs 0.886; a ResNet50 hymenoptera model at
  64 px (153 images) 0.987 vs 1.000. So `auto` quantizes both and keeps the one that agrees best with
  the float model on the calibration images. (Percentile 99.9 was mixed on the three digits models,
  -0.011, 0.000 and +0.025 accuracy against float; entropy lost 0.039 on the demo one, as the
  extremes did. The CalibMaxIntermediateOutputs option is not used: in onnxruntime 1.32 it drops the
  batches it should merge.)
Dynamic quantization is not offered: it turns each Conv into ConvInteger and quantizes activations at
run time, and on the same ResNet50 it was slower than float (0.73x; static QDQ 1.83x in that run).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE
from modelbuilder.results.pipeline import write_model_package
from modelbuilder.results.runtime import Preprocess, make_session, softmax, to_model_input

CALIBRATION_BATCH = 8
CALIBRATIONS = ("averaged", "extremes")  # the order breaks exact ties: averaged first
METADATA_CALIBRATION, METADATA_SCORES = "modelbuilder.calibration", "modelbuilder.calibration_scores"


def has_vnni() -> bool:
    """Whether this CPU has a VNNI dot-product instruction (Linux only; False when it cannot tell)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    except OSError:
        pass
    return False


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an in-memory NCHW array."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        self.input_name, self.images, self.batch_size = input_name, images, batch_size
        self.start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.images):
            return None
        batch = self.images[self.start : self.start + self.batch_size]
        self.start += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self.start = 0


def _check_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3 or len(images) == 0:
        raise InvalidInput(f"The {what} images have shape {images.shape}; an N x 3 x H x W batch is needed.",
                           "pass preprocessed images (center-cropped, NCHW, float32 in [0, 1]).")
    if images.dtype != np.float32:
        images = images.astype(np.float32)
    return images


def _io_names(path: Path) -> tuple[list[str], list[str]]:

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers], [o.name for o in model.graph.output]


def quantize_int8(onnx_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                  calibration_images: np.ndarray, *, reduce_range: bool | None = None,
                  quant_format: str = "qdq", per_channel: bool = True, calibration: str = "auto",
                  float_probs: np.ndarray | None = None, on_step: Callable[[str], None] | None = None) -> Path:
    """Write a static int8 version of `onnx_path` to `out_path`, calibrated on `calibration_images`
    (N x 3 x H x W float32 in [0, 1], already resized and cropped like the model's input).

    `calibration` sets each activation's range: "averaged" (the mean of the batches' min and max),
    "extremes" (the min and max over all images), or "auto": both, keeping the one whose answers agree
    best with the float model's on the calibration images (top-1, then the mean probability difference).
    The choice and both scores are written into the model's metadata (`calibration_of` reads them).
    `float_probs`, the float model's probabilities on the calibration images, saves computing them again
    when the caller has them. `on_step` hears what is being done, for a progress display.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise InvalidInput(f"ONNX model {str(onnx_path)!r} does not exist.", "export the model first.")
    if quant_format not in ("qdq", "qoperator"):
        raise InvalidInput(f"Quantization format {quant_format!r} is not known.", "use 'qdq' or 'qoperator'.")
    if calibration not in ("auto", *CALIBRATIONS):
        raise InvalidInput(f"Calibration {calibration!r} is not known.", "use auto, averaged or extremes.")
    images = _check_images(calibration_images, "calibration")
    inputs, outputs = _io_names(onnx_path)
    if len(inputs) != 1:
        raise InvalidInput(f"ONNX model {str(onnx_path)!r} has inputs {inputs}; one image input is needed.",
                           "quantize a model exported by modelbuilder.")
    reduce_range = not has_vnni() if reduce_range is None else reduce_range
    candidates = CALIBRATIONS if calibration == "auto" else (calibration,)
    if calibration == "auto" and len(images) <= CALIBRATION_BATCH:
        candidates = ("extremes",)  # one batch: its average is its extremes, the two rules give one model
    step = on_step or (lambda _: None)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".quantize-", dir=out_path.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        written = {name: Path(tmp) / f"int8-{name}.onnx" for name in candidates}
        _quantize(onnx_path, prepared, written, inputs[0], images, quant_format, per_channel, reduce_range, step)
        scores: dict[str, dict[str, float]] = {}
        chosen = candidates[0]
        if len(written) > 1:
            step(f"comparing both with the float model on {len(images)} images")
            reference = softmax(predict_logits(onnx_path, images)) if float_probs is None else float_probs
            scores = {name: _fidelity(path, images, reference) for name, path in written.items()}
            chosen = max(candidates, key=lambda name: (scores[name]["top1_agreement"],
                                                       -scores[name]["mean_abs_prob_diff"]))
        _stamp(written[chosen], chosen, scores)
        new_inputs, new_outputs = _io_names(written[chosen])
        if (new_inputs, new_outputs) != (inputs, outputs):
            raise RuntimeError(f"quantization changed the model's signature: {inputs} -> {outputs} became "
                               f"{new_inputs} -> {new_outputs}")
        os.replace(written[chosen], out_path)
    return out_path


def _quantize(onnx_path: Path, prepared: Path, written: dict[str, Path], input_name: str, images: np.ndarray,
              quant_format: str, per_channel: bool, reduce_range: bool, on_step: Callable[[str], None]) -> None:
    """Run onnxruntime's static quantization once per calibration in `written` (name -> output path)."""
    quant_logger = logging.getLogger()  # onnxruntime.quantization logs through the root logger
    previous_level = quant_logger.level
    quant_logger.setLevel(max(previous_level, logging.ERROR))
    try:
        # Shape inference + graph optimization (folds BatchNorm into Conv), as onnxruntime advises.
        quant_pre_process(str(onnx_path), str(prepared))
        for name, path in written.items():
            on_step(f"calibrating on {len(images)} images ({name} ranges)")
            quantize_static(
                str(prepared), str(path), _Batches(input_name, images, CALIBRATION_BATCH),
                quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax,
                extra_options={"CalibMovingAverage": name == "averaged"})
    finally:
        quant_logger.setLevel(previous_level)


def _fidelity(model: Path, images: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How closely an int8 model's probabilities follow the float model's (`reference`) on `images`."""
    probs = softmax(predict_logits(model, images))
    return {"top1_agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "mean_abs_prob_diff": float(np.abs(probs - reference).mean())}


def _stamp(path: Path, chosen: str, scores: dict[str, dict[str, float]]) -> None:
    """Record the calibration (and what each candidate scored) in the model's metadata."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in ((METADATA_CALIBRATION, chosen), (METADATA_SCORES, json.dumps(scores, sort_keys=True))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def calibration_of(path: str | os.PathLike[str]) -> tuple[str, dict[str, dict[str, float]]]:
    """The calibration an int8 model written by `quantize_int8` was made with, and the candidates' scores
    ("" and {} for a model without that metadata)."""
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return props.get(METADATA_CALIBRATION, ""), json.loads(props.get(METADATA_SCORES) or "{}")


def predict_logits(model: str | os.PathLike[str] | Any, images: np.ndarray, batch_size: int = 32,
                   threads: int | None = None) -> np.ndarray:
    """Logits of an ONNX model (a path or an onnxruntime session) for N x 3 x H x W images in [0, 1]."""
    session: Any = model if hasattr(model, "run") else make_session(model, providers=["CPUExecutionProvider"],
                                                                threads=threads)
    images = _check_images(images, "input")
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    parts = [session.run([output_name], {input_name: images[s : s + batch_size]})[0]
             for s in range(0, len(images), batch_size)]
    return np.concatenate(parts)


def evaluate_onnx(model: str | os.PathLike[str] | Any, images: np.ndarray, targets: np.ndarray,
                  batch_size: int = 32) -> float:
    """Top-1 accuracy of an ONNX model on N x 3 x H x W images in [0, 1] with label indices `targets`."""
    targets = np.asarray(targets)
    if len(targets) != len(images):
        raise InvalidInput(f"{len(images)} images but {len(targets)} targets.", "pass one target per image.")
    return float((predict_logits(model, images, batch_size).argmax(1) == targets).mean())


def seconds_per_image(model: str | os.PathLike[str] | Any, images: np.ndarray, batch_size: int = 32,
                      repeats: int = 3, threads: int | None = None) -> float:
    """Best-of-`repeats` seconds per image of one batch of `batch_size` images, after a warm-up run."""
    session: Any = model if hasattr(model, "run") else make_session(model, providers=["CPUExecutionProvider"],
                                                                threads=threads)
    images = _check_images(images, "timing")
    batch = np.ascontiguousarray(np.resize(images, (batch_size, *images.shape[1:])))
    feed = {session.get_inputs()[0].name: batch}
    session.run(None, feed)  # warm-up: first run allocates and picks kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return best / batch_size


@dataclass(frozen=True)
class Int8Export:
    """What `export_int8` wrote, and how the int8 model compares with the float one."""
    onnx: Path
    package: Path
    images: int
    calibration_images: int
    float_accuracy: float
    int8_accuracy: float
    float_ms_per_image: float
    int8_ms_per_image: float
    float_bytes: int
    int8_bytes: int
    reduce_range: bool
    calibration: str  # "averaged" or "extremes" (see quantize_int8)
    calibration_scores: dict[str, dict[str, float]]  # each candidate's agreement with float, when both ran

    @property
    def speedup(self) -> float:
        return self.float_ms_per_image / self.int8_ms_per_image

    @property
    def accuracy_delta(self) -> float:
        return self.int8_accuracy - self.float_accuracy


def export_int8(float_onnx: Path, out_dir: Path, crops: np.ndarray, targets: np.ndarray, labels: list[str],
                spec: Preprocess, metrics: dict[str, Any], input_name: str, output_name: str, *,
                calibration_limit: int = 200, seed: int = 0,
                on_step: Callable[[str], None] | None = None) -> Int8Export:
    """Quantize `float_onnx` into `out_dir` (bestModel.int8.onnx + MLModel.int8.zip) and measure both.

    `crops` are the validation images as the model sees them (N x crop x crop x 3 uint8); up to
    `calibration_limit` of them (a seeded sample) calibrate, all of them measure accuracy.
    """
    if len(crops) == 0:
        raise InvalidInput("No validation images to calibrate on.", "pass a folder with images of the model's labels.")
    images = to_model_input(np.asarray(crops))
    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:calibration_limit])
    reduce_range = not has_vnni()
    out_dir.mkdir(parents=True, exist_ok=True)
    step = on_step or (lambda _: None)
    targets = np.asarray(targets)
    if len(targets) != len(images):
        raise InvalidInput(f"{len(images)} images but {len(targets)} targets.", "pass one target per image.")
    float_session = make_session(float_onnx, providers=["CPUExecutionProvider"])
    step(f"running the float model on {len(images)} validation images")
    float_logits = predict_logits(float_session, images)  # its accuracy, and the reference for calibration
    float_acc = float((float_logits.argmax(1) == targets).mean())
    int8_path = quantize_int8(float_onnx, out_dir / INT8_MODEL_FILE, images[pick], reduce_range=reduce_range,
                              float_probs=softmax(float_logits[pick]), on_step=step)
    int8_session = make_session(int8_path, providers=["CPUExecutionProvider"])
    calibration, scores = calibration_of(int8_path)
    step(f"measuring the int8 model's accuracy on {len(images)} validation images")
    int8_acc = evaluate_onnx(int8_session, images, targets)
    step("timing both models")
    float_s = seconds_per_image(float_session, images, batch_size=min(32, len(images)))
    int8_s = seconds_per_image(int8_session, images, batch_size=min(32, len(images)))
    # The float model's scores stay, under "float"; the top level describes this model.
    summary = {k: v for k, v in metrics.items() if k in ("architecture", "image_size", "best_epoch")}
    summary.update({"accuracy": int8_acc, "num_images": len(images), "float": dict(metrics), "quantization": {
        "type": "int8", "format": "QDQ", "activations": "uint8", "weights": "int8 per channel",
        "weight_bits": 7 if reduce_range else 8, "calibration": f"minmax, {calibration}",
        "calibration_batch": CALIBRATION_BATCH, "calibration_scores": scores, "calibration_images": len(pick),
        "float_accuracy": float_acc, "int8_accuracy": int8_acc, "validation_images": len(images),
        "speedup": float_s / int8_s}})
    package = write_model_package(out_dir / INT8_ZIP_FILE, int8_path, labels, spec, summary, input_name, output_name)
    return Int8Export(int8_path, package, len(images), len(pick), float_acc, int8_acc,
                      float_s * 1000, int8_s * 1000, Path(float_onnx).stat().st_size, int8_path.stat().st_size,
                      reduce_range, calibration, scores)
