"""Fixtures for the results tests: tiny real images, a tiny trained torch model, its ONNX export, an
MLModel.zip and the generated projects. Everything is made here, nothing is downloaded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelbuilder.results import runtime
from modelbuilder.results.pipeline import write_model_package

from .helpers import COLORS, LABELS, METRICS, SPEC


def _noisy(color: tuple[int, int, int], size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.clip(np.array(color) + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    """Four small images per label (PNG and JPEG, landscape and portrait), dominated by its color."""
    root = tmp_path_factory.mktemp("data")
    items = []
    for index, label in enumerate(LABELS):
        (root / label).mkdir()
        for k in range(4):
            size = (48, 40) if k % 2 else (40, 52)
            path = root / label / f"{label}{k}.{'png' if k < 2 else 'jpg'}"
            _noisy(COLORS[label], size, seed=10 * index + k).save(path)
            items.append((path, label))
    return items


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One file per decoding case: every color mode, EXIF rotation, animation, and broken files."""
    root = tmp_path_factory.mktemp("images")
    paths = {name: root / name for name in (
        "cmyk.jpg", "gray.jpg", "rgba.png", "la.png", "palette.png", "sixteen.png", "rotated.jpg",
        "animated.gif", "animated.webp", "truncated.jpg", "text.jpg", "empty.jpg", "bomb.png", "huge.jpg",
        "photo.jpg", "rgb.bmp", "rgb.tiff")}

    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(paths["cmyk.jpg"], quality=95)  # pure red
    Image.new("L", (40, 30), 100).save(paths["gray.jpg"], quality=95)

    rgba = np.zeros((30, 40, 4), np.uint8)  # left: fully transparent black; right: opaque blue
    rgba[:, 20:] = (0, 0, 255, 255)
    rgba[:5, 20:] = (255, 0, 0, 128)  # top right: half-transparent red
    Image.fromarray(rgba).save(paths["rgba.png"])
    Image.fromarray(np.dstack([np.full((30, 40), 50, np.uint8), np.full((30, 40), 0, np.uint8)])).save(
        paths["la.png"])  # LA, fully transparent

    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.paste(0, (0, 0, 20, 30))
    palette.save(paths["palette.png"], transparency=0)  # left: transparent; right: green

    sixteen = np.zeros((30, 40), np.uint16)
    sixteen[:, :20] = 65535
    sixteen[:, 20:30] = 128 * 257
    Image.fromarray(sixteen).save(paths["sixteen.png"])

    rotated = np.zeros((30, 60, 3), np.uint8)  # stored 60 wide: left red, right blue
    rotated[:, :30] = (255, 0, 0)
    rotated[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: red on top
    Image.fromarray(rotated).save(paths["rotated.jpg"], quality=95, exif=exif)

    frames = [Image.new("RGB", (40, 30), color) for color in ((0, 200, 0), (200, 0, 0), (0, 0, 200))]
    frames[0].save(paths["animated.gif"], save_all=True, append_images=frames[1:], duration=50, loop=0)
    frames[0].save(paths["animated.webp"], save_all=True, append_images=frames[1:], duration=50,
                   lossless=True)

    _noisy((120, 120, 120), (64, 64), seed=1).save(paths["photo.jpg"], quality=90)
    data = paths["photo.jpg"].read_bytes()
    paths["truncated.jpg"].write_bytes(data[: len(data) // 2])
    paths["text.jpg"].write_text("this is not an image\n")
    paths["empty.jpg"].write_bytes(b"")
    Image.new("RGB", (40, 30), (10, 20, 30)).save(paths["rgb.bmp"])
    Image.new("RGB", (40, 30), (10, 20, 30)).save(paths["rgb.tiff"])

    # A PNG header claiming 20000x20000 pixels (> 2x Image.MAX_IMAGE_PIXELS); no pixel data needed.
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")
    paths["bomb.png"].write_bytes(png)
    # 144 megapixels: over Image.MAX_IMAGE_PIXELS (a warning only), cheap to write because it is flat.
    Image.new("L", (12000, 12000), 128).save(paths["huge.jpg"], quality=50)
    return paths


@pytest.fixture(scope="session")
def tiny_model(dataset: list[tuple[Path, str]]):
    """normalize -> conv -> pool -> linear, trained for a few steps so its predictions differ by image."""
    import torch
    from torch import nn

    class Normalize(nn.Module):
        def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x - self.mean) / self.std

    torch.manual_seed(0)
    model = nn.Sequential(Normalize(SPEC.mean, SPEC.std), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, len(LABELS)))
    batch = np.stack([runtime.preprocess(path, SPEC) for path, _ in dataset])
    x = torch.from_numpy(runtime.to_model_input(batch))
    y = torch.tensor([LABELS.index(label) for _, label in dataset])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def onnx_model(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported with the dynamo exporter (dynamic batch), as training's export does."""
    import torch

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    example = torch.rand(2, 3, SPEC.crop, SPEC.crop)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(tiny_model, (example,), str(path), dynamo=True, input_names=["image"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False)
    return path


@pytest.fixture(scope="session")
def mlmodel_zip(onnx_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    zip_path = tmp_path_factory.mktemp("package") / "MLModel.zip"
    return write_model_package(zip_path, onnx_model, LABELS, SPEC, METRICS, "image", "logits")


@pytest.fixture(scope="session")
def engine(mlmodel_zip: Path) -> runtime.PredictionEngine:
    return runtime.PredictionEngine.load(mlmodel_zip)


@pytest.fixture(scope="session")
def torch_probs(tiny_model):
    """Reference probabilities from PyTorch for a list of sources, through the same preprocessing."""
    import torch

    def probs(sources: list) -> np.ndarray:
        batch = np.stack([runtime.preprocess(s, SPEC) for s in sources])
        with torch.no_grad():
            logits = tiny_model(torch.from_numpy(runtime.to_model_input(batch)))
        return torch.softmax(logits.double(), dim=1).numpy()

    return probs
