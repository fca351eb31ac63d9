"""Grad-CAM's layer is each architecture's last convolutional stage: the feature map its global pooling
averages, and a module of the network (not a name that silently matches nothing)."""

from __future__ import annotations

import pytest
import torch

from modelbuilder.results.runtime import Preprocess
from modelbuilder.training.explain import CAM_LAYERS, seen_box
from modelbuilder.training.model import build_model
from modelbuilder.training.recipe import ARCHITECTURES


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_cam_layer_is_what_global_pooling_averages(architecture: str) -> None:
    model, _ = build_model(architecture, 3, weights="none")
    model.eval()
    layer = model.get_submodule(CAM_LAYERS[architecture])
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    seen: dict[str, torch.Tensor] = {}
    layer.register_forward_hook(lambda _m, _i, output: seen.update(layer=output))  # None: the output stays
    pools[-1].register_forward_hook(lambda _m, inputs, _o: seen.update(pooled=inputs[0]))
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert seen["layer"].dim() == 4
    assert seen["layer"].shape == seen["pooled"].shape
    assert torch.equal(seen["layer"], seen["pooled"])


def test_the_box_the_model_sees() -> None:
    spec = Preprocess(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert seen_box((256, 256), spec) == (16, 16, 224)
    assert seen_box((512, 256), spec) == (144, 16, 224)  # the long side is cropped to the center square first
    assert seen_box((300, 600), spec) == (19, 169, 262)
