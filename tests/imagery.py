"""Tiny real image folders for tests.

The images are real files written by Pillow: each label has its own dominant colour and a shape, so a
tiny network learns them in a few epochs, plus the awkward files users really have (corrupt, a text
file named .jpg, CMYK, 16-bit, RGBA, EXIF-rotated).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

COLORS = {"cat": (200, 60, 50), "dog": (50, 80, 200), "fox": (60, 170, 70)}


def labeled_image(label: str, index: int, size: int = 32, labels: tuple[str, ...] = tuple(COLORS)) -> Image.Image:
    """A noisy image whose colour and shape say its label."""
    rng = np.random.default_rng([zlib.crc32(label.encode()), index])
    color = np.array(COLORS.get(label, (30 * (labels.index(label) + 1) % 255, 120, 90)), dtype=np.float64)
    pixels = color + rng.normal(0, 30, (size, size, 3))
    k = labels.index(label) if label in labels else 0
    lo, hi = size // 4, 3 * size // 4
    if k % 3 == 0:
        pixels[lo:hi, lo:hi] = 255 - color  # a square
    elif k % 3 == 1:
        pixels[lo:hi, size // 2 - 2 : size // 2 + 2] = 255  # a bar
    else:
        yy, xx = np.mgrid[:size, :size]
        pixels[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = 0  # a disc
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_image_folder(root: Path, per_label: int = 12, labels: tuple[str, ...] = ("cat", "dog"),
                      size: int = 32, odd_files: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for label in labels:
        (root / label).mkdir(exist_ok=True)
        for i in range(per_label):
            fmt = "png" if i % 2 else "jpg"
            labeled_image(label, i, size, labels).save(root / label / f"{i:03d}.{fmt}", quality=95)
    if odd_files:
        add_odd_files(root, labels[0])
    return root


def add_odd_files(root: Path, label: str) -> dict[str, str]:
    """The awkward files of the issue; returns file name -> 'used' or 'skipped'."""
    folder = root / label
    img = labeled_image(label, 100)
    good = np.asarray(img)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(40))
    (folder / "notes.jpg").write_text("this is not an image\n")
    img.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    Image.fromarray(good[:, :, 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    rgba = Image.fromarray(np.dstack([good, np.full(good.shape[:2], 255, np.uint8)]))
    rgba.save(folder / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(folder / "rotated.jpg", quality=95, exif=exif)
    return {"corrupt.jpg": "skipped", "notes.jpg": "skipped", "cmyk.jpg": "used", "sixteen.png": "used",
            "rgba.png": "used", "rotated.jpg": "used"}




def make_multilabel_set(root: Path, per_label: int = 8, labels: tuple[str, ...] = ("cat", "dog"),
                        size: int = 32) -> Path:
    """A label-folder set plus `labels.jsonl` beside it, each image with its folder's label and, for every other
    image, a second tag that is a pure function of its pixels ("bright": it was lightened a lot). Returns the
    manifest."""
    make_image_folder(root, per_label=per_label, labels=labels, size=size)
    lines = []
    for label in labels:
        for path in sorted((root / label).iterdir()):
            tags = [label]
            if int(path.stem) % 2 == 0:
                with Image.open(path) as img:
                    bright = np.clip(np.asarray(img.convert("RGB"), dtype=np.int64) + 110, 0, 255)
                Image.fromarray(bright.astype(np.uint8)).save(path, quality=95)
                tags.append("bright")
            lines.append(json.dumps({"image_url": f"{label}/{path.name}", "label": tags}))
    manifest = root / "labels.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
