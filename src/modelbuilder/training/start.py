"""Training on from an earlier model (`from_model` in the recipe: a run's checkpoints/best.pt, or a checkpoint).

With the same labels the new run continues the old model, every layer and the head, at a lower learning
rate (`continue_lr_scale`): a fine-tune on more or newer data. With other labels the backbone is kept and
the head rebuilt for the new labels, which then trains like one on pretrained features (`--mode auto`:
the head first, then every layer).

The architecture is the starting model's. Its labels and image size come from the checkpoint (this
version writes them into best.pt) or from the run's folder it sits in (recipe.json, bestModelMap.json).
Files are read with `weights_only=True`: a checkpoint is data, never code to run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from modelbuilder.errors import WeightsError
from modelbuilder.results.files import CHECKPOINT_DIR, MAP_FILE, RECIPE_FILE
from modelbuilder.training.model import Classifier, WeightsInfo, head_prefix

CONTINUE, BACKBONE = "continue", "backbone"  # WeightsInfo.source of a run started from an earlier model
_FIX = "pass a run's checkpoints/best.pt (or its MLModel.zip, or --from-run with its id)."


@dataclass(frozen=True)
class StartingPoint:
    """An earlier model's weights (the Classifier's state dict), labels, architecture and image size."""

    path: Path
    state: dict[str, torch.Tensor]
    labels: list[str]
    architecture: str
    image_size: int | None

    def same_labels(self, labels: list[str]) -> bool:
        return self.labels == list(labels)


def _beside(path: Path) -> dict[str, Any]:
    """What the run folder holding `path` (its checkpoints/ folder) says of the model: recipe and labels."""
    folder = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
    found: dict[str, Any] = {}
    try:
        if (folder / RECIPE_FILE).is_file():
            found["recipe"] = json.loads((folder / RECIPE_FILE).read_text())
        if (folder / MAP_FILE).is_file():
            found["labels"] = json.loads((folder / MAP_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found


def load_start(path: str | Path) -> StartingPoint:
    """The model to start from; a one-line WeightsError (with the fix) for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"The model to start from, {str(path)!r}, does not exist.", _FIX)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise WeightsError(f"{str(path)!r} cannot be read as model weights ({type(exc).__name__}).", _FIX) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise WeightsError(f"{str(path)!r} is not a modelbuilder checkpoint (it has no 'model' weights).", _FIX)
    known = {**_beside(path), **{k: checkpoint[k] for k in ("labels", "recipe") if k in checkpoint}}
    labels, recipe = known.get("labels"), known.get("recipe") or {}
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise WeightsError(f"{str(path)!r} does not say which labels its model has (no labels in it, no "
                           f"{MAP_FILE} in its run's folder).", _FIX)
    architecture = recipe.get("architecture")
    if not isinstance(architecture, str):
        raise WeightsError(f"{str(path)!r} does not say its architecture (no recipe in it, no {RECIPE_FILE} in "
                           "its run's folder).", _FIX)
    state = {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}
    size = recipe.get("image_size")
    return StartingPoint(path, state, labels, architecture, size if isinstance(size, int) else None)


def apply_start(model: Classifier, start: StartingPoint, labels: list[str]) -> WeightsInfo:
    """Load `start` into `model` (built for `labels` and the starting model's architecture): all of it with
    the same labels, all but the head with others."""
    head = head_prefix(model)
    own = model.state_dict()
    if start.same_labels(labels):
        wanted = list(own)
        source, detail = CONTINUE, f"continued from {start.path} (same {len(labels)} labels)"
    else:
        wanted = [k for k in own if not k.startswith(head)]
        new = sorted(set(labels) - set(start.labels))
        source, detail = BACKBONE, (f"backbone of {start.path}, a new head for {len(labels)} labels"
                                    + (f" ({len(new)} new: {', '.join(new[:5])})" if new else ""))
    bad = [k for k in wanted if k not in start.state or start.state[k].shape != own[k].shape]
    if bad:
        raise WeightsError(f"The weights of {str(start.path)!r} do not fit {start.architecture}: {len(bad)} tensors "
                           f"are missing or of another shape (first: {bad[0]}).", _FIX)
    model.load_state_dict({k: start.state[k] for k in wanted}, strict=False)
    return WeightsInfo(source, detail)
