"""Constants and helpers shared by the results tests (the fixtures themselves live in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from modelbuilder.results.runtime import Preprocess

LABELS = ["cat", "dog", "fish"]
COLORS = {"cat": (200, 60, 40), "dog": (40, 170, 60), "fish": (50, 70, 210)}
SPEC = Preprocess(resize=32, crop=28, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
REPO_SRC = Path(__file__).resolve().parents[2] / "src"


def subprocess_env() -> dict[str, str]:
    """The environment for child Pythons: modelbuilder importable even when it is not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_SRC), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


PYTHON = sys.executable
METRICS = {"accuracy": 0.9167, "macro_f1": np.float32(0.9), "epochs": 3, "per_label": {"cat": 1.0}}
