"""Explanations of one prediction: where in an image a run's network finds the evidence for a label.

Two methods, both Captum's (the attribution math is theirs, not written here):
- `gradcam`: Grad-CAM (Selvaraju et al. 2017, `captum.attr.LayerGradCam`) on the last convolutional
  stage: coarse (7x7 cells for a 224-px ResNet), specific to the label, one forward and backward pass.
- `integrated_gradients`: integrated gradients (Sundararajan et al. 2017, `captum.attr.IntegratedGradients`)
  from a black image: per pixel, finer and noisier, IG_STEPS forward and backward passes.
Each keeps the evidence *for* the label (positive attributions), scaled to [0, 1] by its 99th percentile.

The network is the run's best epoch (checkpoints/best.pt: the weights that were exported), rebuilt from
the run's recipe; the image goes through the runtime's own preprocessing, so the scores are the model's
(to within the ONNX export check's 1e-4). The model sees the center crop of the image's center square:
the heatmap is placed back there, on the whole image, and what the model never saw is dimmed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam
from matplotlib import colormaps
from PIL import Image
from torch import nn

from modelbuilder.errors import InvalidInput, WeightsError
from modelbuilder.results.files import BEST_CHECKPOINT, ZIP_FILE
from modelbuilder.results.runtime import (
    Preprocess,
    load_image,
    preprocess,
    read_model_package,
    sigmoid,
    softmax,
    to_model_input,
)
from modelbuilder.training.model import Classifier, build_model
from modelbuilder.training.start import load_start

METHODS = ("gradcam", "integrated_gradients")
# The last convolutional stage of each architecture (recipe.ARCHITECTURES), whose output Grad-CAM weighs.
CAM_LAYERS = {"resnet50": "body.layer4", "resnet18": "body.layer4", "mobilenet_v3_large": "body.features.16",
              "efficientnet_b0": "body.features.8", "regnet_y_800mf": "body.trunk_output",
              "convnext_tiny": "body.features.7", "tiny": "body.features.5"}
IG_STEPS = 32  # Captum's Gauss-Legendre rule: 32 points are plenty for a smooth path (its default is 50)
IG_BATCH = 8  # images per forward pass along the path: bounds memory at 224 px
ALPHA = (0.15, 0.55)  # the heatmap's opacity on the image, from no evidence to the most
UNSEEN = 0.45  # brightness kept where the model never looked (outside its center crop)


@dataclass(frozen=True)
class Explanation:
    """The scores of one image and, per method, a heatmap for `label` and its overlay on the image.

    `heatmaps` are float32 (height, width) arrays in [0, 1] of the image's size (0 where the model did not
    look); `overlays` are PNGs of the image's size."""

    labels: list[str]
    score: list[float]  # the probability of every label, in `labels` order
    label: str  # the label explained: the prediction unless another was asked for
    heatmaps: dict[str, np.ndarray]
    overlays: dict[str, bytes]

    @property
    def prediction(self) -> str:
        return self.labels[int(np.argmax(self.score))]

    @property
    def scores(self) -> dict[str, float]:
        return dict(zip(self.labels, self.score, strict=True))

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image, and of every heatmap and overlay."""
        height, width = next(iter(self.heatmaps.values())).shape
        return width, height


class Explainer:
    """A run's best network in evaluation mode, with its labels and preprocessing, ready to explain images."""

    def __init__(self, model: Classifier, architecture: str, labels: list[str], spec: Preprocess,
                 multilabel: bool = False) -> None:
        self.model, self.architecture, self.labels, self.spec = model, architecture, labels, spec
        self.multilabel = multilabel  # scores: a sigmoid per label (else a softmax over them)

    @classmethod
    def load(cls, run_dir: Path) -> Explainer:
        """From a finished run's folder: its recipe, MLModel.zip (labels, preprocessing) and best checkpoint."""
        package = read_model_package(run_dir / ZIP_FILE)
        try:
            start = load_start(run_dir / BEST_CHECKPOINT)  # its weights, labels and architecture, checked
        except WeightsError as error:
            raise InvalidInput(f"The run's best checkpoint cannot explain its model: {error.message}",
                               "train the run again to explain its model.") from None
        model, _ = build_model(start.architecture, len(package.labels), weights="none")
        model.load_state_dict(start.state)
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False  # Captum's hooks need each layer's output intact
        return cls(model.eval(), start.architecture, package.labels, package.preprocess, package.multilabel)

    def explain(self, image: Any, label: str | None = None) -> Explanation:
        """Every method's heatmap of `image` (a path, bytes, a PIL image or an array) for `label` (one of
        `labels`; default: the prediction). An unreadable image raises the runtime's InvalidImageError."""
        crop = preprocess(image, self.spec)  # exactly what the runtime feeds the model
        whole = load_image(image)
        x = torch.from_numpy(to_model_input(crop[None]))
        with torch.no_grad():
            score = (sigmoid if self.multilabel else softmax)(self.model(x).numpy())[0]
        target = self.labels.index(label) if label is not None else int(np.argmax(score))
        heatmaps, overlays = {}, {}
        for method in METHODS:
            heat = _unit(self._attribute(method, x, target))
            heatmaps[method], seen = _placed(heat, whole.size, self.spec)
            overlays[method] = _png(_overlay(whole, heatmaps[method], seen))
        return Explanation(list(self.labels), [float(p) for p in score], self.labels[target], heatmaps, overlays)

    def _attribute(self, method: str, x: torch.Tensor, target: int) -> np.ndarray:
        """The method's attribution over the model's input, (crop, crop), evidence for `target` only."""
        if method == "gradcam":
            layer = self.model.get_submodule(CAM_LAYERS[self.architecture])
            cells = LayerGradCam(self.model, layer).attribute(x, target=target, relu_attributions=True)
            upsampled = LayerAttribution.interpolate(cells, tuple(x.shape[-2:]), interpolate_mode="bilinear")
            return upsampled[0, 0].detach().numpy()
        attribution = IntegratedGradients(self.model).attribute(
            x, baselines=torch.zeros_like(x), target=target, n_steps=IG_STEPS, internal_batch_size=IG_BATCH)
        return attribution[0].sum(0).clamp(min=0).detach().numpy()


def _unit(heat: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1] by the 99th percentile (a few extreme pixels would leave the rest dark)."""
    top = float(np.percentile(heat, 99))
    if top <= 0:  # the evidence is in under 1 % of the pixels
        top = float(heat.max())
    if top <= 0:  # none at all: the label draws nothing from this image
        return np.zeros_like(heat, dtype=np.float32)
    return np.clip(heat / top, 0, 1).astype(np.float32)


def seen_box(size: tuple[int, int], spec: Preprocess) -> tuple[int, int, int]:
    """(left, top, side) of the square of an image of `size` (width, height) that the model sees: the
    center crop of the center square, to within a pixel of the runtime's rounding."""
    width, height = size
    side = min(width, height) * spec.crop / spec.resize
    return round((width - side) / 2), round((height - side) / 2), max(1, round(side))


def _placed(heat: np.ndarray, size: tuple[int, int], spec: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """The crop's heatmap on a canvas of the image's size, and the mask of what the model saw."""
    width, height = size
    left, top, side = seen_box(size, spec)
    scaled = np.asarray(Image.fromarray(heat.astype(np.float32)).resize((side, side), Image.Resampling.BILINEAR))
    canvas = np.zeros((height, width), dtype=np.float32)
    seen = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    canvas[y0:y1, x0:x1] = np.clip(scaled[y0 - top : y1 - top, x0 - left : x1 - left], 0, 1)
    seen[y0:y1, x0:x1] = True
    return canvas, seen


def _overlay(image: Image.Image, heat: np.ndarray, seen: np.ndarray) -> Image.Image:
    """The heatmap in colour (jet: blue for none, red for the most evidence) over the image, more opaque
    where the evidence is strong; what the model never saw is dimmed."""
    base = np.asarray(image, dtype=np.float32)
    colours = colormaps["jet"](heat)[..., :3].astype(np.float32) * 255
    alpha = (ALPHA[0] + (ALPHA[1] - ALPHA[0]) * heat)[..., None]
    blended = np.where(seen[..., None], base * (1 - alpha) + colours * alpha, base * UNSEEN)
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
