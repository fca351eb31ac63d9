"""Architectures and their weights.

Every network is wrapped in `Classifier`, which takes float RGB in [0, 1] and normalises inside, so
the exported ONNX model carries its own mean/std and a consumer only has to resize and scale.
Pretrained ImageNet weights are used when they can be had (the torchvision cache, a download, or a
file the user passes); otherwise the engine says so in one line and trains from scratch.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torchvision
from torch import nn

from modelbuilder.errors import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# architecture -> (torchvision builder, its ImageNet weights enum member)
_TORCHVISION = {
    "resnet50": ("resnet50", "ResNet50_Weights.IMAGENET1K_V2"),
    "resnet18": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1"),
    "regnet_y_800mf": ("regnet_y_800mf", "RegNet_Y_800MF_Weights.IMAGENET1K_V2"),
    "convnext_tiny": ("convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"),
}


@dataclass(frozen=True)
class WeightsInfo:
    source: str  # "imagenet" | "file" | "none"
    detail: str
    warning: str = ""

    @property
    def pretrained(self) -> bool:
        return self.source != "none"


class Classifier(nn.Module):
    """Normalisation + a backbone whose last layer is `head`."""

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, body: nn.Module, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)

    @property
    def head(self) -> nn.Linear:
        return _head_of(self.body)[1]


class TinyNet(nn.Module):
    """A very small CNN for smoke tests and drills, where the model is not what is being tested."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _head_of(body: nn.Module) -> tuple[str, nn.Linear]:
    if isinstance(getattr(body, "fc", None), nn.Linear):
        return "fc", body.fc  # type: ignore[return-value]
    classifier = getattr(body, "classifier", None)
    if isinstance(classifier, nn.Sequential) and isinstance(classifier[-1], nn.Linear):
        return f"classifier.{len(classifier) - 1}", classifier[-1]
    raise TypeError(f"no linear head found on {type(body).__name__}")


def _replace_head(body: nn.Module, num_classes: int) -> None:
    name, old = _head_of(body)
    new = nn.Linear(old.in_features, num_classes)
    if name == "fc":
        body.fc = new
    else:
        cast(nn.Sequential, body.classifier)[-1] = new  # _head_of found it a Sequential


def head_prefix(model: Classifier) -> str:
    return "body." + _head_of(model.body)[0] + "."


def build_model(architecture: str, num_classes: int, weights: str = "auto", offline: bool = False,
                zero_init_residual: bool = False) -> tuple[Classifier, WeightsInfo]:
    """The network with a new `num_classes` head, and where its starting weights came from.

    `zero_init_residual` (ResNets from random initialisation): each residual block starts as the
    identity (its last BatchNorm's scale is zero), which trains faster from scratch (Goyal et al. 2017).
    """
    if architecture == "tiny":
        return Classifier(TinyNet(num_classes)), WeightsInfo("none", "random initialisation (tiny)")
    builder, _ = _TORCHVISION[architecture]
    options = {"zero_init_residual": True} if zero_init_residual and builder.startswith("resnet") else {}
    body = getattr(torchvision.models, builder)(weights=None, **options)
    info = WeightsInfo("none", "random initialisation")
    if weights == "auto":
        state, info = _imagenet_state(architecture, offline)
    elif weights == "none":
        state = None
    else:
        state, info = _file_state(Path(weights), architecture)
    if state is not None:
        _load_backbone(body, state, architecture, info.detail)
    _replace_head(body, num_classes)
    return Classifier(body), info


def _imagenet_state(architecture: str, offline: bool) -> tuple[dict | None, WeightsInfo]:
    _, enum_path = _TORCHVISION[architecture]
    enum_name, member = enum_path.split(".")
    url = getattr(getattr(torchvision.models, enum_name), member).url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True), WeightsInfo(
            "imagenet", f"ImageNet weights from {cached}")
    reason = "offline mode (MODELBUILDER_OFFLINE=1)"
    if not offline:
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                       weights_only=True)
            return state, WeightsInfo("imagenet", f"ImageNet weights downloaded to {cached}")
        except Exception as exc:  # noqa: BLE001 - no network is an expected condition, not a bug
            reason = f"download failed: {type(exc).__name__}"
        finally:
            socket.setdefaulttimeout(previous)
    warning = (f"ImageNet weights for {architecture} are not in {cached.parent} and could not be "
               f"downloaded ({reason}); training from scratch, which needs more data and epochs. "
               f"To use them, copy {Path(url).name} there or pass --weights PATH.")
    return None, WeightsInfo("none", "random initialisation (pretrained weights unavailable)", warning)


def _file_state(path: Path, architecture: str) -> tuple[dict, WeightsInfo]:
    if not path.is_file():
        raise WeightsError(f"Weights file {str(path)!r} does not exist.",
                           "pass --weights auto, none, or the path of a state dict (.pth) file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(f"Weights file {str(path)!r} could not be read ({type(exc).__name__}).",
                           f"pass a state dict saved with torch.save(model.state_dict()) for {architecture}.") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a modelbuilder checkpoint: use its network
    if not isinstance(state, dict):
        raise WeightsError(f"Weights file {str(path)!r} does not hold a state dict.",
                           "save it with torch.save(model.state_dict(), PATH).")
    state = {k.removeprefix("module.").removeprefix("body."): v for k, v in state.items()
             if k not in ("mean", "std")}
    return state, WeightsInfo("file", f"weights from {path}")


def _load_backbone(body: nn.Module, state: dict, architecture: str, source: str) -> None:
    """Load everything but the old head (whose size is the old number of labels)."""
    head_name = _head_of(body)[0] + "."
    own = body.state_dict()
    usable = {k: v for k, v in state.items()
              if not k.startswith(head_name) and k in own and own[k].shape == v.shape}
    missing = [k for k in own if not k.startswith(head_name) and k not in usable]
    if missing:
        raise WeightsError(f"The weights ({source}) do not fit {architecture}: {len(missing)} tensors are "
                           f"missing or of another shape (first: {missing[0]}).",
                           f"pass weights saved from a torchvision {architecture}, or --weights none.")
    body.load_state_dict(usable, strict=False)
