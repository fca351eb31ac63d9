"""The bad-image corpus: every awkward file a user's image folder really holds, made with Pillow.

`make_corpus(root)` writes a folder-per-label data set whose labels hold normal images plus one file
per case, and returns {case: (relative path, expected fate)} where the fate is "used" or the words
the skip reason must contain.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.imagery import labeled_image

LABELS = ("cat", "dog house", "café")  # a space and a non-ASCII letter in label names too


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decompression_bomb_png(width: int = 200_000, height: int = 200_000) -> bytes:
    """A tiny file that declares a gigantic image (40 gigapixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def make_corpus(root: Path, per_label: int = 10, huge_side: int = 12_000) -> dict[str, tuple[str, str]]:
    for i, label in enumerate(LABELS):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_label):
            labeled_image(("cat", "dog", "fox")[i], k).save(folder / f"{k:03d}.png")
    base = labeled_image("cat", 99)
    pixels = np.asarray(base)
    cat = root / "cat"
    cases: dict[str, tuple[str, str]] = {}

    def case(name: str, rel: str, fate: str) -> Path:
        cases[name] = (rel, fate)
        return root / rel

    case("zero-byte file", "cat/zero.jpg", "empty file").write_bytes(b"")
    jpeg = io.BytesIO()
    labeled_image("cat", 98, size=64).save(jpeg, "JPEG", quality=90)
    case("truncated JPEG", "cat/truncated.jpg", "truncated").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    case("text file named .jpg", "cat/notes.jpg", "not an image").write_text("shopping list: milk, eggs\n")
    base.save(case("PNG with a .jpg extension", "cat/really-a-png.jpg", "used"), "PNG")
    case("decompression bomb", "cat/bomb.png", "decompression bomb").write_bytes(decompression_bomb_png())
    Image.new("RGB", (1, 1), (200, 60, 50)).save(case("1x1 pixel", "cat/one-pixel.png", "used"))
    Image.new("RGB", (huge_side, huge_side), (200, 60, 50)).save(
        case(f"very large ({huge_side}x{huge_side}) JPEG", "cat/huge.jpg", "used"), quality=40)
    frames = [labeled_image("cat", 97), labeled_image("dog", 97)]
    frames[0].save(case("animated GIF", "cat/animated.gif", "used"), save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257).save(case("16-bit PNG", "cat/sixteen.png", "used"))
    base.convert("CMYK").save(case("CMYK JPEG", "cat/cmyk.jpg", "used"), quality=90)
    base.convert("L").save(case("grayscale JPEG", "cat/gray.jpg", "used"), quality=90)
    Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 128, np.uint8)])).save(
        case("RGBA PNG", "cat/rgba.png", "used"))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels[:, :20]).save(case("EXIF-rotated JPEG", "cat/rotated.jpg", "used"), quality=90, exif=exif)
    base.save(case("unicode and spaces in the file name", "café/ünïcødé name 01.png", "used"))
    os.symlink(cat / "loop-b.png", case("symlink loop", "cat/loop-a.png", "looping"))
    os.symlink(cat / "loop-a.png", root / "cat" / "loop-b.png")
    cases["symlink loop (second link)"] = ("cat/loop-b.png", "looping")
    outside = root.parent / f"{root.name}-outside.png"
    base.save(outside)
    os.symlink(outside, case("symlink pointing outside the data folder", "cat/outside.png", "outside the data folder"))
    os.symlink(root / "dog house" / "000.png", case("symlink inside the data folder", "cat/inside-link.png", "used"))
    return cases
