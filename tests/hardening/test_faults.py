"""Faults: workers killed at random moments, and a disk that fills up while a checkpoint is written."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from modelbuilder.backends import start_agent
from modelbuilder.config import get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.training.checkpoint import DiskFull, load_checkpoint
from modelbuilder.training.job import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.reliability import record

pytestmark = pytest.mark.slow

TRIALS = 20
SEED = 20261128


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


EPOCHS = 20


def _kill_moments(rng: random.Random, run_ids: list[str]) -> dict[str, tuple[str, int, float]]:
    """A seeded moment per run: (what must have happened, epoch, then a random delay in seconds).

    Drawn over the whole life of a run, so that kills land while it prepares, in every epoch of
    training (between and within steps), and while it evaluates and exports; a delay from the claim
    alone lands mostly in the export on fast machines, where tiny runs train in a second.
    """
    moments = {}
    for run_id in run_ids:
        draw = rng.random()
        if draw < 0.2:
            moments[run_id] = ("claimed", 0, rng.uniform(0.0, 0.5))
        elif draw < 0.8:
            moments[run_id] = ("Running", rng.randint(1, EPOCHS), rng.uniform(0.0, 0.3))
        else:
            moments[run_id] = ("Finalizing", 0, rng.uniform(0.0, 1.0))
    return moments


def _reached(run: Any, what: str, epoch: int) -> bool:
    status, progress = run.status, run.progress
    if what == "claimed":
        return True
    if what == "Running":
        return status == "Finalizing" or (status == "Running" and progress.get("phase") == "training"
                                           and progress.get("epoch", 0) >= epoch)
    return status == "Finalizing"


def test_kill_9_at_random_moments_every_run_completes_and_nothing_is_half_written(plane, monkeypatch):
    """20 runs, each worker killed once at a seeded random moment of its life, from claim to export."""
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "4")  # four small runs at a time
    plane.computes.create("default", "small", "Standard_F1s")
    agent = start_agent(plane.store, poll_s=0.2)
    try:
        runs = [plane.submit(compute="small", epochs=EPOCHS, seed=i, early_stopping_patience=100)
                for i in range(TRIALS)]
        pending = _kill_moments(random.Random(SEED), [run.id for run in runs])
        killed, missed, phases = 0, 0, []
        reached_at: dict[str, float] = {}
        deadline = time.monotonic() + 900
        while pending and time.monotonic() < deadline:
            for run_id in list(pending):
                worker = agent.workers.get(run_id)
                run = plane.runs.get(run_id)
                if worker is None or worker.attempt != 1:
                    if run.terminal or run.attempt > 1:
                        missed += 1
                        del pending[run_id]
                    continue
                what, epoch, delay = pending[run_id]
                if run_id not in reached_at and _reached(run, what, epoch):
                    reached_at[run_id] = time.monotonic()
                if run_id in reached_at and time.monotonic() - reached_at[run_id] >= delay:
                    if worker.poll() is None:
                        phase = run.progress.get("phase", "starting")  # the last progress the worker wrote
                        if phase == "training":
                            phase += f" epoch {run.progress.get('epoch')}"
                        phases.append(f"{run.status}/{phase}")
                        os.kill(worker.pid, signal.SIGKILL)
                        killed += 1
                    else:
                        missed += 1
                    del pending[run_id]
            time.sleep(0.05)
        ended = [plane.wait_ended(run.id, timeout=600) for run in runs]
    finally:
        agent.stop()
        for worker in agent.workers.values():
            worker.kill()
    assert [run.status for run in ended] == ["Completed"] * TRIALS, [(r.id, r.status, r.error) for r in ended]
    store = ArtifactStore(get_settings().artifacts)
    checked = 0
    for run in ended:
        recorded = {a.path: a for a in plane.runs.artifacts(run.id)}
        on_disk = {a.path for a in store.list(run.id) if not a.path.startswith("logs/")}
        assert set(recorded) == on_disk, f"{run.id}: unrecorded or missing files {set(recorded) ^ on_disk}"
        for path, artifact in recorded.items():
            file = store.resolve(run.id, path)
            assert (file.stat().st_size, _sha256(file)) == (artifact.size, artifact.sha256), f"{run.id}/{path}"
            checked += 1
        assert zipfile.ZipFile(store.resolve(run.id, "MLModel.zip")).testzip() is None
        load_checkpoint(store.resolve(run.id, "checkpoints/last.pt"))
    assert killed >= TRIALS // 2, f"only {killed} of {TRIALS} kills landed while a worker ran"
    in_training = sum("training" in phase for phase in phases)
    assert in_training >= TRIALS // 5, f"only {in_training} kills landed in training: {phases}"
    record("kill -9 of the worker at a random moment (seeded)", TRIALS,
           f"all {TRIALS} runs Completed; {checked} files match their recorded size and SHA-256",
           kills_landed=killed, runs_ended_before_the_kill=missed,
           killed_at_status_and_phase=", ".join(f"{p} {phases.count(p)}" for p in sorted(set(phases))))


def _recipe(data: Path, **changes: object) -> TrainConfig:
    values = {"data": str(data), "architecture": "tiny", "weights": "none", "image_size": 32, "epochs": 4,
              "batch_size": 8, "early_stopping_patience": 100}
    values.update(changes)
    return TrainConfig(**values)


class FillDiskAfterFirstEpoch(MemoryReporter):
    """Fills the run's disk right after the first checkpoint, so the second one cannot be written."""

    def __init__(self, disk: Path) -> None:
        super().__init__()
        self.disk = disk

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        super().checkpoint(path, epoch, step)
        if epoch == 1:
            with open(self.disk / "filler", "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                except OSError:
                    pass


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs, when this machine lets us mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({result.stderr.decode().strip()[:80]})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_while_writing_a_checkpoint_on_a_real_small_disk(image_folder, small_disk, tmp_path, home):
    data = image_folder(per_label=8)
    run_dir = small_disk / "run"
    reporter = FillDiskAfterFirstEpoch(small_disk)
    with pytest.raises(DiskFull, match=r"No space left .*\.pt .*is intact"):
        run_training(_recipe(data), run_dir, reporter, cache_root=tmp_path / "cache")
    kept = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert kept["state"]["epoch"] == 1  # the previous checkpoint is whole
    assert not list(run_dir.rglob("*.tmp"))
    record("disk full while writing a checkpoint (16 MB tmpfs)", 1,
           "run stops with 'No space left ... the previous checkpoint is intact'; the epoch-1 checkpoint loads")


def test_disk_full_injected_at_the_checkpoint_write(image_folder, tmp_path, home, monkeypatch):
    """The same on any machine: the second checkpoint write fails with ENOSPC."""
    data = image_folder(per_label=8)
    real_save, calls = torch.save, []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # best.pt and last.pt of epoch 1 went through; epoch 2 fails
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(DiskFull, match="intact"):
        run_training(_recipe(data), tmp_path / "run", MemoryReporter(), cache_root=tmp_path / "cache")
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["state"]["epoch"] == 1
    assert not list((tmp_path / "run").rglob("*.tmp"))
    record("disk full injected (OSError ENOSPC at the checkpoint write)", 1,
           "clear reason; previous checkpoint intact; no temporary file left")
