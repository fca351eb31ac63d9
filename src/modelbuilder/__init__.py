"""modelbuilder: train an image classifier from a folder of labeled images, get a ready result.

The SDK names are imported lazily so that `import modelbuilder` stays light (no torch) for the CLI's
start-up and for code that only predicts.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ModelInput": "modelbuilder.results.runtime",
    "ModelOutput": "modelbuilder.results.runtime",
    "PredictionEngine": "modelbuilder.results.runtime",
    "TrainConfig": "modelbuilder.training.recipe",
    "Workspace": "modelbuilder.sdk",
    "Experiment": "modelbuilder.sdk",
    "Run": "modelbuilder.sdk",
    "Computes": "modelbuilder.sdk",
    "Model": "modelbuilder.sdk",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelbuilder' has no attribute {name!r}")

    return getattr(importlib.import_module(module), name)
