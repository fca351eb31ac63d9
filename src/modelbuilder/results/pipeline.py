"""The write side of the MLModel.zip format (DESIGN §4); `runtime` is the read side.

MLModel.zip holds `pipeline.json` (how to turn an image into the model's input, and what the
output means), `bestModel.onnx` and `bestModelMap.json` (the labels in model-output order).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnx

from modelbuilder.errors import InvalidInput
from modelbuilder.results.runtime import (
    FORMAT,
    MAP_FILE,
    MODEL_FILE,
    MULTILABEL_TASK,
    PIPELINE_FILE,
    SIGMOID,
    InvalidImageError,
    InvalidModelPackageError,
    ModelInput,
    ModelOutput,
    PredictionEngine,
    Preprocess,
    read_model_package,
)

__all__ = [
    "FORMAT",
    "InvalidImageError",
    "InvalidModelPackageError",
    "ModelInput",
    "ModelOutput",
    "PredictionEngine",
    "Preprocess",
    "build_pipeline",
    "read_model_package",
    "write_label_map",
    "write_model_package",
]


def _checked_labels(labels: Sequence[str]) -> list[str]:
    labels = list(labels)
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise InvalidInput(f"Labels {labels!r} are not valid.", "give at least 2 non-empty label names.")
    if len(set(labels)) != len(labels):
        duplicates = sorted({x for x in labels if labels.count(x) > 1})
        raise InvalidInput(f"Labels {duplicates!r} appear more than once.", "give every label once.")
    return labels


def _json_value(value: Any) -> Any:
    """numpy and torch values (scalars and arrays) become plain numbers and lists in metrics."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"metric value {value!r} of type {type(value).__name__} is not JSON serializable")


def _atomic_write(path: Path, write: Any) -> Path:
    """Write through a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_pipeline(labels: Sequence[str], preprocess: Preprocess, metrics: dict[str, Any],
                   input_name: str, output_name: str, thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """The pipeline.json document. With `thresholds` (one per label) the model is multi-label: its logits go
    through a sigmoid each, and every label whose score reaches its threshold is predicted."""
    output: dict[str, Any] = {"name": output_name, "kind": "logits"}
    if thresholds is not None:
        if len(thresholds) != len(labels) or not all(0.0 <= float(t) <= 1.0 for t in thresholds):
            raise InvalidInput(f"Thresholds {list(thresholds)!r} are not one number in [0, 1] per label.",
                               "give a threshold for every label, in the labels' order.")
        output.update(activation=SIGMOID, thresholds=[float(t) for t in thresholds])
    return {
        "format": FORMAT,
        "task": MULTILABEL_TASK if thresholds is not None else "image-classification",
        "input": {"name": input_name, "layout": "NCHW", "dtype": "float32", "range": [0, 1]},
        "preprocess": preprocess.to_dict(),
        "output": output,
        "labels": _checked_labels(labels),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": json.loads(json.dumps(metrics or {}, default=_json_value)),
    }


def _onnx_bytes(onnx_path: Path, input_name: str, output_name: str, n_labels: int) -> bytes:
    """The model as one self-contained ONNX file, checked: the named input and output, one score per label.

    The dynamo exporter writes weights to a `.onnx.data` file beside the graph; the package must hold
    one file, so external data is folded back in (fine below protobuf's 2 GB limit).
    """
    try:
        model = onnx.load(str(onnx_path))
        data = model.SerializeToString()
    except Exception as exc:  # onnx raises DecodeError, ValueError and others for damaged or huge files
        raise InvalidInput(f"{str(onnx_path)!r} is not a readable ONNX model of under 2 GB ({exc}).",
                           "export it again, keeping its .onnx.data file (if any) beside it.") from None
    inputs = [i.name for i in model.graph.input]
    outputs = {o.name: o for o in model.graph.output}
    if input_name not in inputs or output_name not in outputs:
        raise InvalidInput(
            f"ONNX model {str(onnx_path)!r} has inputs {inputs} and outputs {sorted(outputs)}, "
            f"not {input_name!r} -> {output_name!r}.",
            "pass the input and output names used at export.")
    dims = outputs[output_name].type.tensor_type.shape.dim
    if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value != n_labels:
        raise InvalidInput(f"ONNX model {str(onnx_path)!r} outputs {dims[-1].dim_value} scores for "
                           f"{n_labels} labels.", "pass the labels in the model's output order.")
    return data


def write_label_map(path: str | os.PathLike[str], labels: Sequence[str]) -> Path:
    """bestModelMap.json: the labels as a JSON list, in model-output order."""
    data = json.dumps(_checked_labels(labels), indent=2, ensure_ascii=False).encode()
    return _atomic_write(Path(path), lambda handle: handle.write(data))


def write_model_package(zip_path: str | os.PathLike[str], onnx_path: str | os.PathLike[str],
                        labels: Sequence[str], preprocess: Preprocess, metrics: dict[str, Any],
                        input_name: str, output_name: str, thresholds: Sequence[float] | None = None) -> Path:
    """Write MLModel.zip atomically and check that it reads back; returns its path. `thresholds`: a
    multi-label model's, one per label (see `build_pipeline`)."""
    zip_path, onnx_path = Path(zip_path), Path(onnx_path)
    if not onnx_path.is_file():
        raise InvalidInput(f"ONNX model {str(onnx_path)!r} does not exist.", "export the model first.")
    pipeline = build_pipeline(labels, preprocess, metrics, input_name, output_name, thresholds)
    onnx_bytes = _onnx_bytes(onnx_path, input_name, output_name, len(pipeline["labels"]))

    def write(handle: Any) -> None:
        with zipfile.ZipFile(handle, "w") as archive:
            archive.writestr(PIPELINE_FILE, json.dumps(pipeline, indent=2, ensure_ascii=False),
                             compress_type=zipfile.ZIP_DEFLATED)
            # Stored, not deflated: float weights barely compress, and loading stays a plain read.
            archive.writestr(MODEL_FILE, onnx_bytes, compress_type=zipfile.ZIP_STORED)
            archive.writestr(MAP_FILE, json.dumps(pipeline["labels"], indent=2, ensure_ascii=False),
                             compress_type=zipfile.ZIP_DEFLATED)

    _atomic_write(zip_path, write)
    read_model_package(zip_path)
    return zip_path
