"""Prediction runtime: image -> ModelOutput with onnxruntime, numpy and Pillow only.

This file is self-contained on purpose (standard library, numpy, Pillow, onnxruntime): code
generation copies it verbatim into every generated `<Name>.Model` package as `_runtime.py`, so a
project that only predicts installs small and never needs torch. Training imports `load_image`,
`square_image` and `center_crop` from here, so training and prediction decode and crop images with
the same code and agree bit for bit.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

FORMAT = "modelbuilder.pipeline/1"
PIPELINE_FILE, MODEL_FILE, MAP_FILE = "pipeline.json", "bestModel.onnx", "bestModelMap.json"
IMAGE_FORMATS = "JPEG, PNG, BMP, GIF, TIFF or WebP"
MULTILABEL_TASK, SIGMOID = "image-classification-multilabel", "sigmoid"  # a multi-label pipeline.json


@dataclass(frozen=True)
class ModelInput:
    """One image to classify. `image_source` is a path; the runtime also accepts raw bytes, a PIL
    image or a numpy array (HxW gray, HxWx3 RGB, HxWx4 RGBA; uint8 or uint16). `label` is the
    true category, used only for training."""

    image_source: str
    label: str | None = None


@dataclass(frozen=True)
class ModelOutput:
    """`score` holds the probability of every label in map order; the highest belongs to `prediction`.

    A multi-label model scores each label on its own (a sigmoid each: the scores need not sum to 1), and
    `predicted_labels` lists every label whose score reaches its threshold, in map order (none, one or
    several); a multi-class model leaves it None."""

    prediction: str
    score: list[float]
    predicted_labels: list[str] | None = None


class PipelineError(ValueError):
    """Base of the runtime's errors: `message` says what was wrong, `hint` how to fix it."""

    code = "pipeline_error"
    http_status = 422

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class InvalidImageError(PipelineError):
    """One image could not be read: `source` names it, `reason` says why in a few words."""

    code = "invalid_image"

    def __init__(self, source: str, reason: str, hint: str = "") -> None:
        super().__init__(f"Cannot read image {source}: {reason}.", hint)
        self.source, self.reason = source, reason


class InvalidModelPackageError(PipelineError):
    """An MLModel.zip (or its folder) is missing a member, has another format or is inconsistent."""

    code = "invalid_model_package"


@dataclass(frozen=True)
class Preprocess:
    """Resize the short side to `resize`, center-crop to `resize`x`resize`, then to `crop`x`crop`.

    The ONNX model normalises inside its graph; `mean`/`std` are recorded for information and for
    consumers who feed another model."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color: str = "RGB"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        ok = isinstance(self.resize, int) and isinstance(self.crop, int) and 0 < self.crop <= self.resize
        if not ok or len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise PipelineError(f"Preprocess settings {self!r} are not valid.",
                                "use whole numbers 0 < crop <= resize, 3 means and 3 positive stds.")
        if self.color != "RGB" or self.interpolation != "bilinear":
            raise PipelineError(f"Preprocess color {self.color!r} / interpolation {self.interpolation!r} "
                                "is not supported.", "use color 'RGB' and interpolation 'bilinear'.")

    @staticmethod
    def resize_for(crop: int) -> int:
        """The square's side before the center crop to `crop` (the usual 256 -> 224 ratio)."""
        return round(crop * 8 / 7)

    def to_dict(self) -> dict[str, Any]:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                "color": self.color, "interpolation": self.interpolation}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Preprocess:
        try:
            mean = tuple(float(v) for v in values["mean"])
            std = tuple(float(v) for v in values["std"])
            resize, crop = values["resize"], values["crop"]
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"Preprocess settings {values!r} are incomplete or malformed ({exc!r}).",
                                "give resize, crop, mean and std.") from None
        return cls(resize=resize, crop=crop, mean=mean, std=std,  # type: ignore[arg-type]
                   color=values.get("color", "RGB"), interpolation=values.get("interpolation", "bilinear"))


# --- decoding -------------------------------------------------------------------------------------
_open_lock = threading.Lock()  # catch_warnings edits process-wide state; serialise our use of it
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return repr(os.fspath(source))
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


def _open(source: Any, name: str) -> tuple[Image.Image, Any]:
    """Open a path or bytes lazily (header only); returns the image and the file to close."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InvalidImageError(name, "empty file (0 bytes)", "pass the bytes of a whole image.")
        fp: Any = io.BytesIO(source)
    else:
        path = os.fspath(source)
        try:
            if os.path.isdir(path):
                raise InvalidImageError(name, "it is a folder, not a file", "pass the path of an image file.")
            if os.path.getsize(path) == 0:
                raise InvalidImageError(name, "empty file (0 bytes)", "replace it with a valid image.")
            fp = open(path, "rb")  # closed by load_image once the pixels are read
        except FileNotFoundError:
            raise InvalidImageError(name, "file not found", "check the path (relative paths start at "
                                    f"{os.getcwd()!r}).") from None
        except PermissionError:
            raise InvalidImageError(name, "permission denied", "make the file readable.") from None
        except (OSError, ValueError) as exc:  # a name too long, a NUL byte in the path, ...
            raise InvalidImageError(name, f"cannot open it ({exc})", "check the path.") from None
    try:
        with _open_lock, warnings.catch_warnings():
            # Images up to 2x Image.MAX_IMAGE_PIXELS only warn; they are fine to classify.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp), fp
    except Image.DecompressionBombError as exc:
        fp.close()
        pixels = [int(n) for n in re.findall(r"\d+", str(exc))[:2]]
        detail = f"{pixels[0]:,} pixels exceeds the limit of {pixels[1]:,}" if len(pixels) == 2 else str(exc)
        raise InvalidImageError(name, f"decompression bomb ({detail})", "pass a smaller image.") from None
    except UnidentifiedImageError:
        fp.close()
        raise InvalidImageError(name, "not an image (unknown file format)",
                                f"use a {IMAGE_FORMATS} file.") from None
    except OSError as exc:
        fp.close()
        raise InvalidImageError(name, f"unreadable ({exc})", f"use a valid {IMAGE_FORMATS} file.") from None


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    if array.dtype != np.uint8:
        raise InvalidImageError(name, f"numpy dtype {array.dtype} is not supported",
                                "pass uint8 (0..255) or uint16 (0..65535) pixels.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or min(array.shape[:2]) == 0:
        raise InvalidImageError(name, f"numpy shape {array.shape} is not an image",
                                "pass HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA).")
    return Image.fromarray(np.ascontiguousarray(array))  # uint8: HxW -> L, HxWx3 -> RGB, HxWx4 -> RGBA


def _scaled_to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit gray to 8-bit. Pillow's own convert clips everything above 255 to white."""
    values = np.asarray(img)
    if img.mode == "F":
        values = np.nan_to_num(values.astype(np.float64))
        values = values * 255.0 if values.max(initial=0.0) <= 1.0 else values  # 0..1 floats or 0..255
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    values = values.astype(np.int64)
    top = int(values.max(initial=0))
    if img.mode.startswith("I;16") or 255 < top <= 65535:
        values = values >> 8  # 16-bit: keep the high byte, as Pillow does for 16-bit RGB
    elif top > 65535:
        values = values * 255 // top
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparent pixels become white, not black."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        return _scaled_to_8bit(img).convert("RGB")
    if img.mode == "La":
        img = img.convert("LA")  # Pillow has no direct La -> RGBA
    if img.mode in _ALPHA_MODES or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(source: Any, *, draft_size: int | None = None) -> Image.Image:
    """Decode `source` (path, bytes, PIL image or numpy array) to a fully loaded RGB image.

    With `draft_size`, JPEGs are decoded at a reduced DCT scale that still leaves both sides
    >= draft_size (much faster for large photos). EXIF orientation is applied, animated images give
    their first frame, and every failure (missing, empty, truncated, not an image, decompression
    bomb) raises InvalidImageError here rather than later.
    """
    name, fp = _describe(source), None
    if isinstance(source, np.ndarray):
        img = _from_array(source, name)
    elif isinstance(source, Image.Image):
        img = source  # may still be lazy (Image.open without load): loaded below
    elif isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        img, fp = _open(source, name)
    else:
        raise InvalidImageError(name, "unsupported source type",
                                "pass a path, bytes, a PIL image or a numpy array.")
    try:
        if draft_size and fp is not None:
            img.draft("RGB", (draft_size, draft_size))  # JPEG only; other formats ignore it
        img.load()
    except (OSError, ValueError, EOFError, SyntaxError, struct.error, zlib.error) as exc:
        reason = "truncated file" if "truncated" in str(exc) else f"corrupt image data ({exc})"
        raise InvalidImageError(name, reason, f"replace it with a valid {IMAGE_FORMATS} file.") from None
    finally:
        if fp is not None:
            fp.close()
    if img.getexif().get(0x0112, 1) in range(2, 9):
        img = ImageOps.exif_transpose(img)
    return _to_rgb(img)


def square_image(img: Image.Image, size: int) -> np.ndarray:
    """Resize the short side to `size` (bilinear), center-crop the long side: uint8 (size, size, 3)."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    width, height = img.size
    if width <= height:
        new_size = (size, max(size, round(height * size / width)))
    else:
        new_size = (max(size, round(width * size / height)), size)
    if new_size != img.size:
        img = img.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=None)
    array = np.asarray(img)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return np.ascontiguousarray(array[top : top + size, left : left + size])


def center_crop(array: np.ndarray, crop: int) -> np.ndarray:
    """Center crop of a uint8 HxWx3 array to crop x crop (offset (S - crop) // 2 on both axes)."""
    height, width = array.shape[:2]
    if crop > height or crop > width:
        raise ValueError(f"Cannot crop {crop}x{crop} out of a {width}x{height} image.")
    top, left = (height - crop) // 2, (width - crop) // 2
    return array[top : top + crop, left : left + crop]


def preprocess(source: Any, spec: Preprocess) -> np.ndarray:
    """The whole chain for one image: uint8 (crop, crop, 3), ready for `to_model_input`."""
    return center_crop(square_image(load_image(source, draft_size=spec.resize), spec.resize), spec.crop)


def to_model_input(batch: np.ndarray) -> np.ndarray:
    """NHWC uint8 -> NCHW float32 in [0, 1] (the ONNX model normalises inside its graph)."""
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


# --- the model package -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelPackage:
    """The parsed members of an MLModel.zip: pipeline.json, the label map and the ONNX bytes."""

    pipeline: dict[str, Any]
    labels: list[str]
    onnx: bytes
    preprocess: Preprocess

    @property
    def multilabel(self) -> bool:
        """Whether the model scores each label on its own (a sigmoid each, per-label thresholds)."""
        return self.pipeline["output"].get("activation") == SIGMOID


def read_model_package(path: str | os.PathLike[str]) -> ModelPackage:
    """Read and check an MLModel.zip, or a folder holding its three members."""
    path = Path(path)
    hint = "pass the MLModel.zip written by a modelbuilder run (or a folder with its three files)."
    members: dict[str, bytes] = {}
    try:
        if path.is_dir():
            members = {n: (path / n).read_bytes() for n in (PIPELINE_FILE, MODEL_FILE, MAP_FILE)
                       if (path / n).is_file()}
        else:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
                members = {n: archive.read(n) for n in (PIPELINE_FILE, MODEL_FILE, MAP_FILE) if n in names}
    except FileNotFoundError:
        raise InvalidModelPackageError(f"Model package {str(path)!r} does not exist.", hint) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModelPackageError(f"Model package {str(path)!r} is not a readable zip ({exc}).",
                                       hint) from None
    missing = [n for n in (PIPELINE_FILE, MODEL_FILE, MAP_FILE) if n not in members]
    if missing:
        raise InvalidModelPackageError(f"Model package {str(path)!r} has no {', '.join(missing)}.", hint)
    try:
        pipeline = json.loads(members[PIPELINE_FILE])
        labels = json.loads(members[MAP_FILE])
    except ValueError as exc:
        raise InvalidModelPackageError(f"Model package {str(path)!r} holds malformed JSON ({exc}).",
                                       hint) from None
    found = pipeline.get("format") if isinstance(pipeline, dict) else None
    if found != FORMAT:
        raise InvalidModelPackageError(
            f"Model package {str(path)!r} has format {found!r}; this runtime reads {FORMAT!r}.",
            "re-export the model with this version of modelbuilder, or use a matching runtime.")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise InvalidModelPackageError(f"{MAP_FILE} in {str(path)!r} is not a list of label names.", hint)
    if pipeline.get("labels", labels) != labels:
        raise InvalidModelPackageError(f"{PIPELINE_FILE} and {MAP_FILE} in {str(path)!r} disagree on labels.",
                                       "re-export the model; the package was edited or mixed up.")
    for key in ("input", "output", "preprocess"):
        if not isinstance(pipeline.get(key), dict):
            raise InvalidModelPackageError(f"{PIPELINE_FILE} in {str(path)!r} has no {key!r} section.", hint)
    activation = pipeline["output"].get("activation", "softmax")
    thresholds = pipeline["output"].get("thresholds")
    if activation not in ("softmax", SIGMOID) or (activation == SIGMOID and not (
            isinstance(thresholds, list) and len(thresholds) == len(labels)
            and all(isinstance(t, int | float) for t in thresholds))):
        raise InvalidModelPackageError(
            f"{PIPELINE_FILE} in {str(path)!r} has an output activation {activation!r} without one threshold "
            "per label, or one this runtime does not know.", hint)
    return ModelPackage(pipeline, labels, members[MODEL_FILE], Preprocess.from_dict(pipeline["preprocess"]))


def usable_cores() -> int:
    """CPU cores this process may run on (respects taskset/cgroup affinity where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits (N x labels), in float64 and stable for any logit size."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each logit's own probability, in float64 and stable for any logit size."""
    z = logits.astype(np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def make_session(model: bytes | str | os.PathLike[str], *, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> Any:
    """An onnxruntime session set up for prediction: every graph optimization, one intra-op thread per
    usable core, operators run one after another (a CNN is a chain; parallel operators only contend)."""
    import onnxruntime as ort  # imported here so that training's use of the image functions stays light

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, sess_options=options, providers=list(providers))


class PredictionEngine:
    """An MLModel.zip ready to predict. Safe to share between threads (onnxruntime sessions are)."""

    def __init__(self, package: ModelPackage, session: Any) -> None:
        self._package, self._session = package, session
        self.input_name: str = package.pipeline["input"].get("name") or session.get_inputs()[0].name
        self.output_name: str = package.pipeline["output"].get("name") or session.get_outputs()[0].name

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, providers: Sequence[str] | None = None,
             threads: int | None = None) -> PredictionEngine:
        """Load an MLModel.zip (or its folder). Uses CUDA when onnxruntime offers it, else the CPU."""
        package = read_model_package(path)
        try:
            session = make_session(package.onnx, providers=providers, threads=threads)
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise InvalidModelPackageError(f"{MODEL_FILE} in {str(path)!r} cannot be loaded by onnxruntime "
                                           f"({str(exc).splitlines()[0]}).",
                                           "re-export the model; the ONNX file is damaged.") from None
        engine = cls(package, session)
        engine._check_signature(path)
        return engine

    def _check_signature(self, path: Any) -> None:
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if self.input_name not in inputs or self.output_name not in outputs:
            raise InvalidModelPackageError(
                f"{MODEL_FILE} in {str(path)!r} has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                f"not {self.input_name!r} -> {self.output_name!r} as {PIPELINE_FILE} says.",
                "re-export the model; the package was edited or mixed up.")
        width = outputs[self.output_name].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise InvalidModelPackageError(
                f"{MODEL_FILE} in {str(path)!r} outputs {width} scores for {len(self.labels)} labels.",
                "re-export the model; the package was edited or mixed up.")

    @property
    def labels(self) -> list[str]:
        return list(self._package.labels)

    @property
    def preprocess(self) -> Preprocess:
        return self._package.preprocess

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self._package.pipeline.get("metrics") or {})

    @property
    def pipeline(self) -> dict[str, Any]:
        return json.loads(json.dumps(self._package.pipeline))  # a copy the caller may change

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def multilabel(self) -> bool:
        """Whether the model scores each label on its own (a sigmoid each, per-label thresholds)."""
        return self._package.multilabel

    @property
    def thresholds(self) -> list[float] | None:
        """A multi-label model's threshold of every label, in map order (None: multi-class)."""
        return [float(t) for t in self._package.pipeline["output"]["thresholds"]] if self.multilabel else None

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, labels) for an NHWC uint8 batch of preprocessed images (multi-label: each
        label's own)."""
        if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"Expected an NHWC uint8 batch of RGB images, got {batch.dtype} {batch.shape}.")
        (logits,) = self._session.run([self.output_name], {self.input_name: to_model_input(batch)})
        return sigmoid(logits) if self.multilabel else softmax(logits)

    def labels_found(self, probs: np.ndarray) -> list[str] | None:
        """A multi-label model's labels whose score (of one image's `probs`) reaches their threshold, in map
        order; None for a multi-class model."""
        if not self.multilabel:
            return None
        cuts = self._package.pipeline["output"]["thresholds"]
        scored = zip(self._package.labels, probs.tolist(), cuts, strict=True)
        return [label for label, p, t in scored if p >= t]

    def _output(self, probs: np.ndarray) -> ModelOutput:
        return ModelOutput(prediction=self._package.labels[int(np.argmax(probs))], score=probs.tolist(),
                           predicted_labels=self.labels_found(probs))

    def _prepare(self, item: Any) -> np.ndarray:
        return preprocess(item.image_source if isinstance(item, ModelInput) else item, self.preprocess)

    def predict(self, item: Any) -> ModelOutput:
        """Classify one ModelInput (or a raw path, bytes, PIL image or numpy array)."""
        return self._output(self.predict_proba(self._prepare(item)[None])[0])

    def predict_batch(self, items: Iterable[Any], batch_size: int = 32,
                      workers: int | None = None) -> list[ModelOutput]:
        """Classify many images: decoded by `workers` threads (Pillow releases the GIL), run in batches."""
        items = list(items)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        results: list[ModelOutput] = []
        with ThreadPoolExecutor(max_workers=workers or min(8, usable_cores())) as pool:
            for start in range(0, len(items), batch_size):
                arrays = list(pool.map(self._prepare, items[start : start + batch_size]))
                results.extend(self._output(p) for p in self.predict_proba(np.stack(arrays)))
        return results
