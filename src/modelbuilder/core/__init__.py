"""The control plane: the store, its entities, and one service per noun.

    store = Store.open()                      # SQLite under the home folder, or MODELBUILDER_DB_URL
    WorkspaceService(store).ensure_default()  # workspace 'default' with the local compute 'local'
    run = RunService(store).submit("default", "pets", "local", recipe)

Names are imported lazily, so importing `modelbuilder.core.entities` alone stays free of SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Store": "modelbuilder.core.store",
    "upgrade": "modelbuilder.core.store",
    "current_revision": "modelbuilder.core.store",
    "head_revision": "modelbuilder.core.store",
    "WorkspaceService": "modelbuilder.core.workspace",
    "ComputeService": "modelbuilder.core.compute",
    "register_provisioner": "modelbuilder.core.compute",
    "RunService": "modelbuilder.core.runs",
    "RunRecorder": "modelbuilder.core.recording",
    "LeaseService": "modelbuilder.core.leases",
    "ArtifactStore": "modelbuilder.core.artifacts",
    "SizeCatalog": "modelbuilder.core.sizes",
    "SizeSpec": "modelbuilder.core.sizes",
    "host_capacity": "modelbuilder.core.sizes",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelbuilder.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
