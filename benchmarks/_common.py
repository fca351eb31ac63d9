"""What the benchmark scripts share: finding the data, running one side in its own process, peak memory.

Each side of a comparison runs in a child process of its own (`run_side`), so that one side's imports,
caches and peak memory never mix into the other's numbers. A child writes its result as JSON to a file
the parent names; the parent also samples the resident memory of the child's whole process tree.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
HYMENOPTERA = SHARED_DATASETS / "hymenoptera"


@dataclass(frozen=True)
class Dataset:
    """A training folder and a validation folder, each with one sub-folder per label."""

    name: str
    train: Path
    val: Path
    photos: bool  # real photographs (resize to 224-ish) rather than tiny scans


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} usable cores"


def _split_copy(source: Path, target: Path, fraction: float, seed: int) -> tuple[Path, Path]:
    """Copy a folder-per-label set into train/ and val/ with the trainer's own stratified split."""
    from modelbuilder.training.data import discover, stratified_split

    samples, _ = discover(source)
    labels = sorted({s.label for s in samples})
    train_idx, val_idx = stratified_split([labels.index(s.label) for s in samples], fraction, seed)
    for part, indices in (("train", train_idx), ("val", val_idx)):
        for i in indices:
            dest = target / part / samples[i].label / samples[i].path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(samples[i].path, dest)
    return target / "train", target / "val"


def resolve_data(data: str | None, workdir: Path, seed: int = 0) -> Dataset:
    """--data as given (split into train/val copies unless it has train/ and val/ already), else the
    real-photo set in ../shared/datasets/hymenoptera, else scikit-learn's digits written as PNGs."""
    if data is None and (HYMENOPTERA / "train").is_dir() and (HYMENOPTERA / "val").is_dir():
        return Dataset("hymenoptera", HYMENOPTERA / "train", HYMENOPTERA / "val", photos=True)
    if data is None:
        from modelbuilder.demo_data import write_digits

        write_digits(workdir / "digits-all")
        train, val = _split_copy(workdir / "digits-all", workdir / "digits", 0.2, seed)
        return Dataset("digits", train, val, photos=False)
    root = Path(data).expanduser().resolve()
    if not root.is_dir():
        raise SystemExit(f"error: --data {data!r} is not a folder. Fix: pass a folder with one sub-folder per label.")
    if (root / "train").is_dir() and (root / "val").is_dir():
        return Dataset(root.name, root / "train", root / "val", photos=True)
    train, val = _split_copy(root, workdir / "split", 0.2, seed)
    return Dataset(root.name, train, val, photos=True)


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory in MiB of this process, and of the largest of its waited-for children
    (DataLoader workers)."""
    per_mib = 2**20 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / per_mib
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / per_mib
    return {"self": round(own, 1), "largest_child": round(children, 1)}


class TreeSampler:
    """Samples the summed RSS of a process and its descendants (shared pages count once per process)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                for proc in [root, *root.children(recursive=True)]:
                    try:
                        total += proc.memory_info().rss
                    except psutil.Error:
                        continue
            except psutil.Error:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)


@dataclass(frozen=True)
class MemorySample:
    """The memory of a process tree at one moment, in bytes, each figure summed over its processes."""

    at: float  # time.monotonic(): one clock for every process on the machine, so a child can mark a moment
    processes: int
    rss: int
    uss: int
    pss: int | None  # only Linux reports it


class TreeMemorySampler:
    """Samples the unique memory of a process and its descendants, keeping every sample.

    Summed RSS counts a page once per process that maps it: the torch libraries and the parent's
    copy-on-write heap count again in every DataLoader worker. PSS divides each page among the processes
    mapping it, so a page shared only inside the tree counts once in all; USS counts only the pages
    that a single process maps (a lower bound: pages shared between the tree's own processes are left
    out). Linux reads both from /proc/PID/smaps_rollup (psutil's `memory_full_info`); other systems
    give USS only. Pages a process shares with a program outside the tree (another Python running
    torch) count in PSS for their share only, so PSS moves a little with what else the machine runs.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[MemorySample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            at, rss, uss, pss, seen = time.monotonic(), 0, 0, 0, 0
            for proc in tree:
                try:
                    info = proc.memory_full_info()
                except psutil.Error:  # ended (or became a zombie) between the listing and the read
                    continue
                seen += 1
                rss, uss = rss + info.rss, uss + info.uss
                share = getattr(info, "pss", None)
                pss = None if pss is None or share is None else pss + share
            if seen:
                self.samples.append(MemorySample(at, seen, rss, uss, pss))
            self._stop.wait(self.interval)

    def peak_mb(self, measure: str, until: float | None = None) -> float | None:
        """The largest `measure` ("rss", "uss" or "pss") sampled, in MiB, up to the monotonic time
        `until` (None: every sample); None when nothing was sampled or the system does not report it."""
        values = [getattr(s, measure) for s in self.samples if until is None or s.at <= until]
        if not values or any(v is None for v in values):
            return None
        return round(max(values) / 2**20, 1)

    @property
    def most_processes(self) -> int:
        return max((s.processes for s in self.samples), default=0)


def run_side_sampled(script: Path, args: list[str], env: dict[str, str] | None = None,
                     timeout: float | None = None, interval: float = 0.1) -> tuple[dict[str, Any], TreeMemorySampler]:
    """`run_side`, sampling the child's process tree with a `TreeMemorySampler` (USS, PSS and summed RSS
    over time) rather than the summed RSS alone; returns the child's JSON result (plus its wall time)
    and the sampler."""
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(script), "--child", *args, "--result", str(result_file)]
        started = time.perf_counter()
        child = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=sys.stderr)
        with TreeMemorySampler(child.pid, interval) as sampler:
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise SystemExit(f"error: {' '.join(command)} took more than {timeout:.0f} s.") from None
        if code != 0 or not result_file.is_file():
            raise SystemExit(f"error: {' '.join(command)} failed with exit code {code} (see its output above).")
        result = json.loads(result_file.read_text())
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    return result, sampler


def run_side(script: Path, args: list[str], env: dict[str, str] | None = None,
             timeout: float | None = None) -> dict[str, Any]:
    """Run `script --child ... --result FILE` in a fresh interpreter; returns its JSON result plus the
    sampled peak RSS of its process tree and its wall time."""
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(script), "--child", *args, "--result", str(result_file)]
        started = time.perf_counter()
        child = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=sys.stderr)
        with TreeSampler(child.pid) as sampler:
            try:
                code = child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                raise SystemExit(f"error: {' '.join(command)} took more than {timeout:.0f} s.") from None
        if code != 0 or not result_file.is_file():
            raise SystemExit(f"error: {' '.join(command)} failed with exit code {code} (see its output above).")
        result = json.loads(result_file.read_text())
    result["tree_peak_rss_mb"] = sampler.peak_mb
    result["process_wall_s"] = round(time.perf_counter() - started, 2)
    return result


def write_result(path: str, values: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(values))


def child_env(home: Path, offline: bool = True) -> dict[str, str]:
    """A fresh modelbuilder home per benchmark, so nothing is read from or left in the user's."""
    env = {"MODELBUILDER_HOME": str(home)}
    if offline:
        env["MODELBUILDER_OFFLINE"] = "1"
    return env
