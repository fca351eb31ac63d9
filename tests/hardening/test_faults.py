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

from modelbuilder.config import get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.training.checkpoint import DiskFull, load_checkpoint
from modelbuilder.training.engine import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.reliability import record

pytestmark = pytest.mark.slow

TRIALS = 20
SEED = 20261128
EPOCHS = 6
STEPS = 4  # 16 training images of the plane's data, 4 a step
# Where the kills land, in turn: every phase of a run's life, training most (a point per run; see
# _kill_moments). The first half is killed right at its point, the second half a seeded moment after
# it, wherever the worker then is (often in the middle of writing a file).
SCHEDULE = ("Preparing", "preparing", "training", "training", "evaluating", "training", "Finalizing", "training",
            "exporting", "training")
EXPECTED_STATUS = {"Preparing": "Preparing", "preparing": "Preparing", "training": "Running",
                   "evaluating": "Running", "Finalizing": "Finalizing", "exporting": "Finalizing"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_moments(rng: random.Random, run_ids: list[str]) -> dict[str, tuple[str, float]]:
    """A seeded moment per run: (the pause point its first attempt holds at, then seconds to wait
    after releasing it before the kill; 0: killed while held there)."""
    moments = {}
    for i, run_id in enumerate(run_ids):
        kind = SCHEDULE[i % len(SCHEDULE)]
        point = kind
        if kind == "training":
            point = f"training {rng.randint(1, EPOCHS)} {rng.randint(1, STEPS)}"
        elif kind == "evaluating":
            point = f"evaluating {rng.randint(1, EPOCHS)}"
        moments[run_id] = (point, 0.0 if i < TRIALS // 2 else round(rng.uniform(0.05, 0.5), 3))
    return moments


def _where(run: Any) -> str:
    """'Running/training epoch 3 step 2': the status and the last progress the worker stored."""
    phase = run.progress.get("phase", "starting")
    if phase == "training":
        phase += f" epoch {run.progress.get('epoch')} step {run.progress.get('step')}"
    elif phase == "evaluating":
        phase += f" epoch {run.progress.get('epoch')}"
    return f"{run.status}/{phase}"


def test_kill_9_at_random_moments_every_run_completes_and_nothing_is_half_written(plane, start_agents,
                                                                                monkeypatch):
    """20 runs, each worker killed once at a seeded moment of its life, from its claim to its export."""
    monkeypatch.setenv("MODELBUILDER_CPU_SLOTS", "4")  # four small runs at a time
    plane.computes.create("default", "small", "Standard_F1s")
    runs = [plane.submit(compute="small", epochs=EPOCHS, seed=i, early_stopping_patience=100)
            for i in range(TRIALS)]
    pending = _kill_moments(random.Random(SEED), [run.id for run in runs])
    for run_id, (point, _) in pending.items():
        plane.holds.at(point, run_id)  # before any agent can claim the run
    agent = start_agents()
    exact: list[tuple[str, Any]] = []  # (point, the run as the store had it when it was killed there)
    after: list[str] = []
    deadline = time.monotonic() + 900
    while pending and time.monotonic() < deadline:
        for run_id in list(pending):
            held = plane.holds.held(run_id)
            if held is None:
                continue
            point, delay = pending.pop(run_id)
            worker = agent.workers[run_id]
            assert (worker.attempt, worker.pid) == (1, held["pid"])
            if delay == 0:
                exact.append((point, plane.runs.get(run_id)))
                os.kill(worker.pid, signal.SIGKILL)
                plane.holds.release(run_id)  # the retry goes through
            else:
                plane.holds.release(run_id)
                time.sleep(delay)
                if worker.poll() is None:
                    after.append(_where(plane.runs.get(run_id)))
                    os.kill(worker.pid, signal.SIGKILL)
        time.sleep(0.05)
    assert not pending, f"never held: {pending}"
    ended = [plane.wait_ended(run.id, timeout=600) for run in runs]
    assert [run.status for run in ended] == ["Completed"] * TRIALS, [(r.id, r.status, r.error) for r in ended]
    store = ArtifactStore(get_settings().artifacts)
    checked = 0
    for run in ended:
        recorded = {a.path: a for a in plane.recorder.artifacts(run.id)}
        on_disk = {a.path for a in store.list(run.id) if not a.path.startswith("logs/")}
        assert set(recorded) == on_disk, f"{run.id}: unrecorded or missing files {set(recorded) ^ on_disk}"
        for path, artifact in recorded.items():
            file = store.resolve(run.id, path)
            assert (file.stat().st_size, _sha256(file)) == (artifact.size, artifact.sha256), f"{run.id}/{path}"
            checked += 1
        assert zipfile.ZipFile(store.resolve(run.id, "MLModel.zip")).testzip() is None
        load_checkpoint(store.resolve(run.id, "checkpoints/last.pt"))
        killed_attempts = [h for h in plane.runs.history(run.id) if h.status == "Queued" and "SIGKILL" in h.reason]
        assert run.attempt == 1 + len(killed_attempts)
    # Every kill made at a point landed there, on any machine: in each phase, and in training epochs.
    assert len(exact) == TRIALS // 2
    for point, run in exact:
        kind, *numbers = point.split()
        assert run.status == EXPECTED_STATUS[kind], (point, _where(run))
        if kind.islower():  # a progress phase, and where in it
            reported = (run.progress["phase"], run.progress["epoch"], run.progress["step"])
            assert reported[: 1 + len(numbers)] == (kind, *map(int, numbers)), (point, _where(run))
    assert {EXPECTED_STATUS[point.split()[0]] for point, _ in exact} == {"Preparing", "Running", "Finalizing"}
    assert len({run.progress["epoch"] for point, run in exact if point.startswith("training")}) >= 2
    landed = [_where(run) for _, run in exact] + after
    record("kill -9 of the worker at a random moment (seeded)", TRIALS,
           f"all {TRIALS} runs Completed; {checked} files match their recorded size and SHA-256",
           kills_landed=len(landed), kills_at_their_point=len(exact),
           runs_ended_before_a_late_kill=TRIALS // 2 - len(after),
           killed_at_status_and_phase=", ".join(f"{w} {landed.count(w)}" for w in sorted(set(landed))))


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
            try:  # the run's own files may have filled the disk already: then even the open fails
                with open(self.disk / "filler", "wb") as f:
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
