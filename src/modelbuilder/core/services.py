"""The control plane's services over one store, made when first used.

The CLI (one per command), the SDK (one per process) and the server (one per process) each hold one
of these, so they call exactly the same services.
"""

from __future__ import annotations

from functools import cached_property

from modelbuilder.config import Settings, get_settings
from modelbuilder.core.artifacts import ArtifactStore
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService


class Services:
    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self._opened = store
        self.settings = settings or get_settings()

    @property
    def store(self) -> Store:
        return self._opened

    @cached_property
    def workspaces(self) -> WorkspaceService:
        return WorkspaceService(self.store, self.settings)

    @cached_property
    def computes(self) -> ComputeService:
        return ComputeService(self.store)

    @cached_property
    def runs(self) -> RunService:
        return RunService(self.store)

    @cached_property
    def leases(self) -> LeaseService:
        return LeaseService(self.store)

    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifacts)
