"""The control plane's services over one store: the one object every layer above the store holds.

    with Services() as services:            # the store of MODELBUILDER_HOME / MODELBUILDER_DB_URL
        services.runs.get(run_id)

A CLI command holds one for its duration, the SDK one per process, the server one per process (in its
`ServerState`), a worker one per attempt. The store is opened on first use (once, also when several
threads ask at the same moment) and closed by `close()` or at the end of the `with` block; the
services are made on first use and share it. The artifact store is built here and nowhere else.
"""

from __future__ import annotations

import threading
from functools import cached_property
from types import TracebackType

from modelbuilder.config import Settings, get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.datasets import DataAssetService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.registry import ModelRegistry
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService


class Services:
    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        """Services over `store`, or over the store of `settings` (default: from the environment),
        opened when first used. A store passed in stays its owner's to close."""
        self.settings = settings or get_settings()
        self._store = store
        self._owns_store = store is None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store.open(self.settings.store_url)
        return self._store

    def close(self) -> None:
        """Close the store if this object opened it (a later use opens it again)."""
        with self._lock:
            if self._store is not None and self._owns_store:
                self._store.close()
                self._store = None
                for name in ("workspaces", "computes", "runs", "recorder", "leases", "models", "data"):
                    self.__dict__.pop(name, None)  # they held the closed store

    def __enter__(self) -> Services:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @cached_property
    def workspaces(self) -> WorkspaceService:
        return WorkspaceService(lambda: self.store, self.settings)  # the workspace in use needs no store

    @cached_property
    def computes(self) -> ComputeService:
        return ComputeService(self.store)

    @cached_property
    def runs(self) -> RunService:
        return RunService(self.store)

    @cached_property
    def recorder(self) -> RunRecorder:
        return RunRecorder(self.store)

    @cached_property
    def leases(self) -> LeaseService:
        return LeaseService(self.store)

    @cached_property
    def models(self) -> ModelRegistry:
        return ModelRegistry(self.store)

    @cached_property
    def data(self) -> DataAssetService:
        return DataAssetService(self.store, self.settings.artifacts)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return artifact_store(self.settings)


def artifact_store(settings: Settings | None = None) -> ArtifactStore:
    """The artifact store of `settings` (MODELBUILDER_ARTIFACT_ROOT, else `<home>/artifacts`), for code that
    needs a run's folder without the store (the launchers, a Ray worker noting its rank)."""
    return ArtifactStore((settings or get_settings()).artifacts)
