"""Exact and near duplicates in the data, found at preparation.

An exact duplicate is the same file content (SHA-256 of the bytes). A near duplicate is the same picture
re-encoded, resized or slightly shifted: its perceptual hash (`imagehash.phash`, the DCT's low
frequencies) and its difference hash (`imagehash.dhash`, the gradients) are both within a few bits. Both
hashes are taken from the decoded cache's records, so no image is decoded a second time.

Each pair found says what it means: two copies within a label (harmless but wasted), across labels (one
of the two labels is probably wrong: a labelling conflict), or across the training/validation split (a
leak: the model is scored on an image it trained on, which inflates the score).

Pairs are found without comparing every image with every other: two 64-bit hashes that differ in at most
`d` bits agree exactly on at least one of `d + 1` bands of their bits (pigeonhole), so only images that
share a band are compared.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from modelbuilder.training.cache import DecodedCache
from modelbuilder.training.samples import LABELS_JOINED

PHASH_MAX_BITS = 6  # near duplicates: perceptual hashes at most this many of 64 bits apart...
DHASH_MAX_BITS = 8  # ...and difference hashes at most this many. Read off the shared sets: re-shot copies in
#                     trashnet came within phash 6 / dhash 8; photos of other objects on the same background came
#                     within phash 6 too, but 9 bits of dhash and more apart (different hand signs in sign-digits:
#                     9, 9; different trash: 12 to 27)
PAIRS_KEPT = 500  # the most pairs listed in the report (all are counted, up to PAIRS_COUNTED)
PAIRS_COUNTED = 100_000  # a set of thousands of copies of one picture stops counting here (memory)
ROWS_AT_ONCE = 512  # rows of a bucket compared at once (a bucket of n images costs n x ROWS_AT_ONCE bytes)
TRAINING, VALIDATION = "training", "validation"


@dataclass(frozen=True)
class DataImage:
    """One image as the report names it: its path relative to its data, its label and its side of the split."""

    path: str
    label: str
    split: str

    @property
    def label_set(self) -> frozenset[str]:
        """Its labels as a set: "cat;bright" and "bright;cat" are the same labels, not a conflict."""
        return frozenset(self.label.split(LABELS_JOINED))


@dataclass(frozen=True)
class Fingerprints:
    digest: list[str]  # SHA-256 of each file
    phash: np.ndarray  # uint64 per image
    dhash: np.ndarray


def _bits(h: imagehash.ImageHash) -> int:
    return int(np.packbits(h.hash.flatten()).view(">u8")[0])


def picture_hashes(picture: Image.Image) -> tuple[int, int]:
    """The perceptual and difference hashes of one picture, as 64-bit integers."""
    return _bits(imagehash.phash(picture)), _bits(imagehash.dhash(picture))


def fingerprint(files: Sequence[Path], cache: DecodedCache, records: np.ndarray, threads: int = 4) -> Fingerprints:
    """The file digests and both hashes of `files`, whose decoded pixels are `records` of `cache`."""

    def digest(path: Path) -> str:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest()

    with ThreadPoolExecutor(threads) as pool:
        digests = list(pool.map(digest, files))
    phash = np.zeros(len(files), dtype=np.uint64)
    dhash = np.zeros(len(files), dtype=np.uint64)
    for start in range(0, len(files), 256):
        chosen = records[start : start + 256]
        for k, pixels in enumerate(cache.read(chosen)):
            phash[start + k], dhash[start + k] = picture_hashes(Image.fromarray(pixels))
    return Fingerprints(digests, phash, dhash)


def _near_pairs(phash: np.ndarray, dhash: np.ndarray, limit: int) -> set[tuple[int, int]]:
    """Pairs (i < j) within PHASH_MAX_BITS and DHASH_MAX_BITS, found through the pigeonhole bands of phash
    (at most `limit` of them)."""
    bands = PHASH_MAX_BITS + 1
    edges = np.linspace(0, 64, bands + 1).astype(int)
    pairs: set[tuple[int, int]] = set()
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        keys = (phash >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(keys, kind="stable")
        for group in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
            group = np.sort(group)
            for start in range(0, len(group) - 1, ROWS_AT_ONCE):
                rows = group[start : start + ROWS_AT_ONCE]
                p = np.bitwise_count(phash[rows][:, None] ^ phash[group][None, :])
                d = np.bitwise_count(dhash[rows][:, None] ^ dhash[group][None, :])
                near = (p <= PHASH_MAX_BITS) & (d <= DHASH_MAX_BITS)
                for a, b in zip(*np.nonzero(near), strict=True):
                    if start + a < b:
                        pairs.add((int(rows[a]), int(group[b])))
                if len(pairs) >= limit:
                    return pairs
    return pairs


def find_duplicates(images: Sequence[DataImage], prints: Fingerprints) -> dict[str, Any]:
    """The report's `duplicates` section: counts of each kind and the pairs, conflicts and leaks first."""
    by_digest: dict[str, list[int]] = {}
    for i, digest in enumerate(prints.digest):
        by_digest.setdefault(digest, []).append(i)
    exact: set[tuple[int, int]] = set()
    for group in by_digest.values():
        exact.update(itertools.islice(itertools.combinations(group, 2), PAIRS_COUNTED - len(exact)))
    near = _near_pairs(prints.phash, prints.dhash, PAIRS_COUNTED) - exact
    pairs: list[dict[str, Any]] = []
    for kind, found in (("exact", exact), ("near", near)):
        for a, b in found:
            one, other = images[a], images[b]
            distance = int(np.bitwise_count(prints.phash[a] ^ prints.phash[b]))
            pairs.append({"kind": kind, "distance": distance, "across_labels": one.label_set != other.label_set,
                          "across_split": one.split != other.split,
                          "images": [{"path": x.path, "label": x.label, "split": x.split} for x in (one, other)]})
    pairs.sort(key=lambda p: (not p["across_labels"], not p["across_split"], p["kind"] != "exact", p["distance"],
                              p["images"][0]["path"], p["images"][1]["path"]))
    within = [p for p in pairs if not p["across_labels"] and not p["across_split"]]
    return {
        "checked_images": len(images),
        "within_label": len(within),
        "within_label_exact": sum(p["kind"] == "exact" for p in within),
        "across_labels": sum(p["across_labels"] for p in pairs),
        "across_split": sum(p["across_split"] for p in pairs),
        "pairs_total": len(pairs),
        "complete": len(exact) < PAIRS_COUNTED and len(near) < PAIRS_COUNTED,  # False: counting stopped early
        "pairs": pairs[:PAIRS_KEPT],
        "method": f"SHA-256 of the files; near: phash within {PHASH_MAX_BITS} and dhash within {DHASH_MAX_BITS} "
                  "of 64 bits",
    }
