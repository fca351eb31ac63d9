"""Decoding every kind of image to RGB, refusing broken ones, and the resize/crop geometry."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from modelbuilder.results.runtime import (
    InvalidImageError,
    Preprocess,
    center_crop,
    load_image,
    preprocess,
    square_image,
    to_model_input,
)


def rgb(path_or_source, **kwargs) -> np.ndarray:
    img = load_image(path_or_source, **kwargs)
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def close(pixel: np.ndarray, expected: tuple[int, int, int], tolerance: int = 6) -> bool:
    return bool(np.all(np.abs(pixel - np.array(expected)) <= tolerance))


def test_cmyk_jpeg_becomes_rgb(images):
    assert close(rgb(images["cmyk.jpg"])[15, 20], (255, 0, 0))


def test_gray_jpeg_becomes_rgb(images):
    assert close(rgb(images["gray.jpg"])[15, 20], (100, 100, 100), tolerance=2)


def test_transparent_pixels_become_white(images):
    pixels = rgb(images["rgba.png"])
    assert tuple(pixels[20, 5]) == (255, 255, 255)  # fully transparent black -> white, not black
    assert tuple(pixels[20, 30]) == (0, 0, 255)
    assert close(pixels[2, 30], (255, 127, 127), tolerance=1)  # half-transparent red over white
    assert tuple(rgb(images["la.png"])[10, 10]) == (255, 255, 255)


def test_palette_transparency_becomes_white(images):
    pixels = rgb(images["palette.png"])
    assert tuple(pixels[10, 5]) == (255, 255, 255)
    assert tuple(pixels[10, 30]) == (0, 255, 0)


def test_sixteen_bit_png_is_scaled_not_clipped(images):
    assert Image.open(images["sixteen.png"]).mode.startswith("I")
    pixels = rgb(images["sixteen.png"])
    assert tuple(pixels[10, 5]) == (255, 255, 255)
    assert tuple(pixels[10, 25]) == (128, 128, 128)  # Pillow's own convert would give 255 here
    assert tuple(pixels[10, 35]) == (0, 0, 0)


def test_exif_orientation_is_applied(images):
    pixels = rgb(images["rotated.jpg"])
    assert pixels.shape == (60, 30, 3)  # stored 60x30, shown 30x60
    assert close(pixels[5, 15], (255, 0, 0), tolerance=12)
    assert close(pixels[55, 15], (0, 0, 255), tolerance=12)


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp"])
def test_animated_image_gives_its_first_frame(images, name):
    assert close(rgb(images[name])[15, 20], (0, 200, 0), tolerance=2)


@pytest.mark.parametrize("name", ["rgb.bmp", "rgb.tiff"])
def test_other_formats(images, name):
    assert tuple(rgb(images[name])[0, 0]) == (10, 20, 30)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.jpg", "truncated file"),
        ("text.jpg", "not an image"),
        ("empty.jpg", "empty file"),
        ("bomb.png", "decompression bomb (400,000,000 pixels exceeds the limit"),
        ("missing.jpg", "file not found"),
    ],
)
def test_bad_files_raise_a_one_line_reason(images, tmp_path, name, reason):
    path = images.get(name, tmp_path / name)
    with pytest.raises(InvalidImageError) as caught:
        load_image(path)
    message = str(caught.value)
    assert reason in caught.value.reason
    assert message.startswith(f"Cannot read image {str(path)!r}: ")
    assert "Fix: " in message
    assert "\n" not in message
    assert caught.value.to_dict()["code"] == "invalid_image"


def test_truncated_file_fails_even_with_draft(images):
    with pytest.raises(InvalidImageError, match="truncated"):
        load_image(images["truncated.jpg"], draft_size=16)


def test_lazy_pil_image_of_a_truncated_file_is_refused(images):
    with pytest.raises(InvalidImageError, match="truncated"):
        load_image(Image.open(images["truncated.jpg"]))


def test_folder_is_refused(tmp_path):
    with pytest.raises(InvalidImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_refused(images, tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(images["photo.jpg"].read_bytes())
    path.chmod(0)
    with pytest.raises(InvalidImageError, match="permission denied"):
        load_image(path)


def test_huge_image_loads_despite_bomb_warning(images):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        img = load_image(images["huge.jpg"], draft_size=224)
    assert img.size == (1500, 1500)  # decoded at 1/8 scale, still >= 224 on both sides
    assert Image.MAX_IMAGE_PIXELS == 89478485  # not changed globally


def test_bytes_pil_and_numpy_sources(images):
    data = images["rgba.png"].read_bytes()
    assert np.array_equal(rgb(data), rgb(images["rgba.png"]))
    assert np.array_equal(rgb(bytearray(data)), rgb(images["rgba.png"]))
    assert np.array_equal(rgb(Image.open(io.BytesIO(data))), rgb(images["rgba.png"]))

    gray = np.full((30, 40), 77, np.uint8)
    assert tuple(rgb(gray)[0, 0]) == (77, 77, 77)
    color = np.zeros((30, 40, 3), np.uint8)
    color[..., 2] = 200
    assert tuple(rgb(color)[0, 0]) == (0, 0, 200)
    rgba = np.zeros((30, 40, 4), np.uint8)
    assert tuple(rgb(rgba)[0, 0]) == (255, 255, 255)
    assert tuple(rgb(np.full((30, 40), 65535, np.uint16))[0, 0]) == (255, 255, 255)

    floats = Image.fromarray(np.full((4, 4), 0.5, np.float32))
    assert tuple(rgb(floats)[0, 0]) == (128, 128, 128)


def test_ycbcr_image_becomes_rgb():
    ycbcr = Image.new("RGB", (4, 4), (200, 30, 90)).convert("YCbCr")
    assert close(rgb(ycbcr)[0, 0], (200, 30, 90), tolerance=3)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (np.zeros((4, 4), np.float64), "dtype float64"),
        (np.zeros((4, 4, 2), np.uint8), "shape (4, 4, 2)"),
        (b"", "empty file"),
        (12, "unsupported source type"),
    ],
)
def test_bad_sources_are_refused(source, reason):
    with pytest.raises(InvalidImageError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        load_image(source)


def test_square_image_and_center_crop_geometry():
    wide = Image.fromarray(np.tile(np.arange(90, dtype=np.uint8), (30, 1))).convert("RGB")  # 90x30
    square = square_image(wide, 20)
    assert square.shape == (20, 20, 3)
    assert square.dtype == np.uint8
    # short side 30 -> 20, long side 90 -> 60; the crop keeps columns 20..39 of 60, i.e. the middle
    assert abs(int(square[0, 10, 0]) - 45) <= 2
    tall = square_image(Image.new("RGB", (15, 41), (9, 9, 9)), 16)
    assert tall.shape == (16, 16, 3)

    array = np.arange(7 * 7 * 3, dtype=np.uint8).reshape(7, 7, 3)
    cropped = center_crop(array, 4)
    assert cropped.shape == (4, 4, 3)
    assert np.array_equal(cropped, array[1:5, 1:5])
    with pytest.raises(ValueError, match="Cannot crop 8x8"):
        center_crop(array, 8)


def test_preprocess_chain_and_model_input(images):
    spec = Preprocess(resize=32, crop=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    array = preprocess(images["photo.jpg"], spec)
    expected = center_crop(square_image(load_image(images["photo.jpg"], draft_size=32), 32), 28)
    assert np.array_equal(array, expected)
    tensor = to_model_input(np.stack([array, array]))
    assert tensor.shape == (2, 3, 28, 28)
    assert tensor.dtype == np.float32
    assert tensor.flags["C_CONTIGUOUS"]
    assert np.allclose(tensor[1, 2, 3, 4], array[3, 4, 2] / 255.0)


def test_preprocess_spec_round_trip_and_validation():
    spec = Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert Preprocess.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="not valid"):
        Preprocess(resize=200, crop=224, mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="incomplete"):
        Preprocess.from_dict({"resize": 256})


def _photo(path: Path, size: tuple[int, int]) -> None:
    """A photo-like JPEG: soft shapes, a blur and sensor-like noise."""
    rng = np.random.default_rng(7)
    img = Image.new("RGB", size, (120, 140, 160))
    draw = ImageDraw.Draw(img)
    for _ in range(40):
        x, y, r = rng.integers(0, size[0]), rng.integers(0, size[1]), rng.integers(40, 300)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    pixels = np.asarray(img.filter(ImageFilter.GaussianBlur(3))) + rng.normal(0, 6, (size[1], size[0], 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)


@pytest.mark.parametrize("size", [256, 224, 64])
def test_draft_decoding_is_close_to_full_decoding(tmp_path, size):
    path = tmp_path / "large.jpg"
    _photo(path, (2000, 1500))
    drafted = load_image(path, draft_size=size)
    assert min(drafted.size) >= size
    assert drafted.size[0] < 2000
    fast = square_image(drafted, size).astype(int)
    full = square_image(load_image(path), size).astype(int)
    diff = np.abs(fast - full)
    print(f"draft {drafted.size} vs full at {size}: mean {diff.mean():.3f}, p99 {np.percentile(diff, 99)}, "
          f"max {diff.max()}")
    assert diff.mean() < 1.5
    assert np.percentile(diff, 99) <= 12
