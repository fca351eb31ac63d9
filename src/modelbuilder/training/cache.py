"""The decoded cache: every image decoded, EXIF-rotated and resized once, then read as raw bytes.

Decoding and resizing JPEGs every epoch is what usually makes training wait. Here each image is
decoded once into a `size x size x 3` uint8 record of one flat file on disk (resized with the very
function prediction uses, so training and prediction see the same pixels). The file is keyed by the
images' paths, sizes and modification times and by the record size, so later epochs and later runs on
the same data reuse it. Records are read with `os.pread` into a batch buffer, not through a memory
map, so the process's resident memory grows with the batch size and never with the dataset: the OS
page cache holds the file, outside the process.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from modelbuilder.results.runtime import InvalidImageError, load_image, square_image

CACHE_VERSION = 1


@dataclass(frozen=True)
class DecodedCache:
    path: Path
    count: int
    size: int
    reasons: dict[int, str]  # index -> why the image could not be used

    @property
    def record_bytes(self) -> int:
        return self.size * self.size * 3

    def ok(self, index: int) -> bool:
        return index not in self.reasons

    def read(self, indices: Sequence[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Records `indices` as a (k, size, size, 3) uint8 array."""
        n, rb = len(indices), self.record_bytes
        if out is None or out.shape[0] < n:
            out = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        flat = out.reshape(-1)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for k, i in enumerate(indices):
                view = flat[k * rb : (k + 1) * rb].data
                if os.preadv(fd, [view], int(i) * rb) != rb:
                    raise OSError(f"decoded cache {self.path} is shorter than expected")
        finally:
            os.close(fd)
        return out[:n]


def cache_key(paths: Sequence[Path], size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{size}:".encode())
    for p in paths:
        try:
            st = p.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{p.resolve()}\0{stamp}\n".encode())
    return h.hexdigest()[:32]


def build_decoded_cache(
    paths: Sequence[Path],
    size: int,
    root: Path,
    threads: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DecodedCache:
    """Decode `paths` into a cache under `root` (or reuse the one already there)."""
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(paths, size)
    data_path, meta_path = root / f"{key}.u8", root / f"{key}.json"
    with FileLock(str(root / f"{key}.lock")):
        cached = _load(data_path, meta_path, len(paths), size)
        if cached is not None:
            if on_progress:
                on_progress(len(paths), len(paths))
            return cached
        reasons = _decode_all(paths, size, data_path, threads, on_progress)
        meta = {"version": CACHE_VERSION, "count": len(paths), "size": size,
                "reasons": {str(k): v for k, v in reasons.items()}, "files": [str(p) for p in paths]}
        tmp = meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)  # the metadata lands last: a cache without it is rebuilt
    return DecodedCache(data_path, len(paths), size, reasons)


def _load(data_path: Path, meta_path: Path, count: int, size: int) -> DecodedCache | None:
    try:
        meta = json.loads(meta_path.read_text())
        if (meta["version"], meta["count"], meta["size"]) != (CACHE_VERSION, count, size):
            return None
        if data_path.stat().st_size != count * size * size * 3:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return DecodedCache(data_path, count, size, {int(k): v for k, v in meta["reasons"].items()})


def _decode_all(paths: Sequence[Path], size: int, data_path: Path, threads: int | None,
                on_progress: Callable[[int, int], None] | None) -> dict[int, str]:
    tmp = data_path.with_suffix(".u8.tmp")
    count, record_bytes = len(paths), size * size * 3
    reasons: dict[int, str] = {}
    done = 0
    lock = threading.Lock()
    # pwrite, not a memory map: dirty pages of a map would count in this process's memory.
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def decode(i: int) -> None:
        nonlocal done
        try:
            record = square_image(load_image(paths[i], draft_size=size), size)
            os.pwrite(fd, record.tobytes(), i * record_bytes)
        except InvalidImageError as exc:
            reasons[i] = exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd file must never stop training
            reasons[i] = f"could not be decoded ({type(exc).__name__}: {exc})"
        with lock:
            done += 1
            if on_progress and (done % 64 == 0 or done == count):
                on_progress(done, count)

    try:
        os.ftruncate(fd, count * record_bytes)
        workers = threads or max(1, len(os.sched_getaffinity(0)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(decode, range(count)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, data_path)
    return reasons
