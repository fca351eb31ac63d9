"""What every route depends on: the server's state (settings, one open store, the services on it) and
small checks of path parameters, as `Annotated` aliases (`ServicesDep`, `RunIdPath`, ...).

The store is opened once per server by the app's lifespan; an app used without its lifespan (a test
client outside `with`, schemathesis' in-process transport) opens it on first use.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Path, Request

from modelbuilder.config import Settings
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, NotFound
from modelbuilder.results.files import RESULT_MARKER
from modelbuilder.server.live import RunFeeds
from modelbuilder.server.schemas import RunPublic

if TYPE_CHECKING:
    from modelbuilder.core.scheduler import Agent
    from modelbuilder.core.store import Store
    from modelbuilder.results.runtime import PredictionEngine

class EngineCache:
    """One PredictionEngine per run, the most recently used few kept; reloaded if MLModel.zip changes."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._engines: OrderedDict[str, tuple[tuple[int, int], PredictionEngine]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str, package: os.PathLike[str] | str) -> PredictionEngine:
        from modelbuilder.results.runtime import PredictionEngine

        stat = os.stat(package)
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._engines.get(run_id)
            if cached is not None and cached[0] == stamp:
                self._engines.move_to_end(run_id)
                return cached[1]
        engine = PredictionEngine.load(package, threads=2)  # outside the lock: loading takes a moment
        with self._lock:
            self._engines[run_id] = (stamp, engine)
            self._engines.move_to_end(run_id)
            while len(self._engines) > self.size:
                self._engines.popitem(last=False)
        return engine


class ServerState(Services):
    """The settings, the store (opened on first use), the services of one server process, and the live
    feeds of the runs its clients watch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engines = EngineCache()
        self.feeds = RunFeeds(self)
        self.agent: Agent | None = None
        self._store: Store | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from modelbuilder.core.store import Store

                    self._store = Store.open(self.settings.store_url)
        return self._store

    def close(self) -> None:
        self.feeds.close()
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    # --- helpers shared by routers and pages ------------------------------------------------------------
    def workspace_names(self) -> dict[str, str]:
        """Workspace id -> name (runs carry the id only)."""
        return {ws.id: ws.name for ws in self.workspaces.list()}

    def has_results(self, run_id: str) -> bool:
        return self.artifacts.exists(run_id, RESULT_MARKER)

    def run_public(self, run: e.Run, names: dict[str, str] | None = None) -> RunPublic:
        names = names if names is not None else self.workspace_names()
        return RunPublic.of(run, names.get(run.workspace_id, ""), self.has_results(run.id))

    def run_in(self, workspace: str, run_id: str) -> e.Run:
        """The run, if it belongs to `workspace` (a run page's address names both)."""
        ws = self.workspaces.get(workspace)
        run = self.runs.get(run_id)
        if run.workspace_id != ws.id:
            raise NotFound(f"Run {run_id!r} does not exist in workspace {workspace!r}.",
                           f"open it from its own workspace's page, or list runs at /workspaces/{workspace}.")
        return run

    def require_results(self, run: e.Run) -> None:
        if not self.has_results(run.id):
            raise Conflict(f"Run {run.id} has no results yet ({run.status}).",
                           "wait until it is Completed, then try again.")


def get_state(request: Request) -> ServerState:
    return request.app.state.server


ServicesDep = Annotated[ServerState, Depends(get_state)]


def check_run_id(run_id: Annotated[str, Path(description="A run id, like run-0123456789ab.")]) -> str:
    """Any text that is not a run id names no run: 404, before anything touches the store or disk."""
    if not e.RUN_ID.fullmatch(run_id):
        raise NotFound(f"Run {run_id[:40]!r} does not exist.", "run ids look like 'run-0123456789ab'.")
    return run_id


RunIdPath = Annotated[str, Depends(check_run_id)]


def existing_run(run_id: RunIdPath, services: ServicesDep) -> e.Run:
    return services.runs.get(run_id)


RunDep = Annotated[Any, Depends(existing_run)]
