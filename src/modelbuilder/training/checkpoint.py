"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer and scheduler states, where training stands (epoch and step
within it, with the partial epoch's running sums), the RNG states, the history, the best result so far
and the recipe. It is written to a temporary file, flushed to disk and renamed, so a kill at any moment
leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import errno
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import CHECKPOINT_DIR as CHECKPOINT_DIR  # re-exported


@dataclass
class TrainState:
    epoch: int = 0  # epochs fully done
    step: int = 0  # steps done within epoch `epoch` (non-zero only for a mid-epoch checkpoint)
    partial: dict[str, float] = field(default_factory=dict)  # running sums of the unfinished epoch
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    elapsed_s: float = 0.0  # training time over every attempt, for --time-budget
    history: list[dict[str, float]] = field(default_factory=list)

    def improved_by(self, accuracy: float, loss: float) -> bool:
        return accuracy > self.best_accuracy or (accuracy == self.best_accuracy and loss < self.best_loss)


class DiskFull(OSError):
    """No space left while writing a checkpoint; the previous checkpoint is untouched."""


def atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:  # torch.save wraps a failed write in a RuntimeError
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in str(exc):
            raise DiskFull(errno.ENOSPC, f"No space left on the disk while writing {path.name} in {path.parent}; "
                           f"the previous {path.name} is intact. Free some space there (or move "
                           "MODELBUILDER_ARTIFACT_ROOT) and the run resumes from it") from None
        raise
    os.replace(tmp, path)


def rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: TrainState, recipe: dict[str, Any], labels: list[str],
                    ema: torch.nn.Module | None = None) -> None:
    atomic_save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "state": asdict(state), "rng": rng_states(),
        "recipe": recipe, "labels": labels, "format": "modelbuilder.checkpoint/1",
        **({"ema": ema.state_dict()} if ema is not None else {}),
    }, path)


def load_checkpoint(path: Path) -> dict[str, Any]:

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InvalidInput(f"Checkpoint {str(path)!r} does not exist.", "pass the path of a last.pt file.") from None
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not raised as a bug
        raise InvalidInput(f"Checkpoint {str(path)!r} could not be read ({type(exc).__name__}).",
                           "pass a checkpoint written by modelbuilder (checkpoints/last.pt).") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != "modelbuilder.checkpoint/1":
        raise InvalidInput(f"{str(path)!r} is not a modelbuilder checkpoint.",
                           "pass checkpoints/last.pt from a run's folder.")
    return checkpoint
