"""Demo data sets that ship with modelbuilder's dependencies, so the demo needs no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from modelbuilder.errors import AlreadyExists, InvalidInput

DATASETS = ("digits",)


def write_digits(target: str | Path, overwrite: bool = False) -> dict[str, int]:
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, labels 0-9) as a
    folder-per-label PNG set: `target/<label>/<index>.png`. Returns images per label."""
    from sklearn.datasets import load_digits  # here: scikit-learn takes a second to import, for this only

    root = Path(target).expanduser()
    if root.exists() and any(root.iterdir()) and not overwrite:
        if (root / "0").is_dir() and len(list(root.glob("*/*.png"))) == 1797:
            return {d.name: len(list(d.glob("*.png"))) for d in sorted(root.iterdir()) if d.is_dir()}
        raise AlreadyExists(f"The folder {str(root)!r} exists and is not empty.",
                            "pass an empty or new folder.")
    digits = load_digits()
    counts: dict[str, int] = {}
    # 0..16 ink levels -> 0..255 gray, dark ink on white paper as scanned digits usually look.
    pixels = (255 - digits.images * (255 / 16)).round().clip(0, 255).astype(np.uint8)
    for i, (image, label) in enumerate(zip(pixels, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
        counts[str(label)] = counts.get(str(label), 0) + 1
    return counts


def write_dataset(name: str, target: str | Path) -> dict[str, int]:
    if name != "digits":
        raise InvalidInput(f"Unknown demo data set {name!r}.", f"use one of: {', '.join(DATASETS)}.")
    return write_digits(target)
