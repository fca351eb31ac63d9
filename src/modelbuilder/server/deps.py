"""What every route depends on: the server's state (settings, the one services object, engines, live
feeds), small checks of path parameters and an uploaded image, as `Annotated` aliases (`ServicesDep`, `StateDep`,
`RunIdPath`, `ImageUpload`).

The store is opened once per server by the app's lifespan; an app used without its lifespan (a test
client outside `with`, schemathesis' in-process transport) opens it on first use.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Depends, File, Path, Request, UploadFile

from modelbuilder.config import Settings
from modelbuilder.core import entities as e
from modelbuilder.core.scheduler import Agent
from modelbuilder.core.services import Services
from modelbuilder.errors import NotFound, PayloadTooLarge
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.sdk import results
from modelbuilder.server.live import RunFeeds
from modelbuilder.server.middleware import UPLOAD_LIMIT
from modelbuilder.server.schemas import RunPublic


class EngineCache:
    """One PredictionEngine per run, the most recently used few kept; reloaded if MLModel.zip changes."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._engines: OrderedDict[str, tuple[tuple[int, int], PredictionEngine]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str, package: os.PathLike[str] | str) -> PredictionEngine:
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


class ServerState:
    """One server process: its services (one store, opened on first use), the prediction engines it keeps,
    the live feeds of the runs its clients watch, and its agent."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = Services(settings)
        self.engines = EngineCache()
        self.feeds = RunFeeds(self.services)
        self.agent: Agent | None = None

    def close(self) -> None:
        self.feeds.close()
        self.services.close()


def run_public(services: Services, run: e.Run, names: dict[str, str] | None = None) -> RunPublic:
    """The run as the API shows it; `names` (workspace id -> name) spares a lookup per run of a list."""
    names = names if names is not None else services.workspaces.names_by_id()
    return RunPublic.of(run, names.get(run.workspace_id, ""), results.has_results(services, run.id))


def run_in(services: Services, workspace: str, run_id: str) -> e.Run:
    """The run, if it belongs to `workspace` (a run page's address names both)."""
    ws = services.workspaces.get(workspace)
    run = services.runs.get(run_id)
    if run.workspace_id != ws.id:
        raise NotFound(f"Run {run_id!r} does not exist in workspace {workspace!r}.",
                       f"open it from its own workspace's page, or list runs at /workspaces/{workspace}.")
    return run


def get_state(request: Request) -> ServerState:
    return request.app.state.server


def get_services(request: Request) -> Services:
    return get_state(request).services


StateDep = Annotated[ServerState, Depends(get_state)]
ServicesDep = Annotated[Services, Depends(get_services)]


def check_run_id(run_id: Annotated[str, Path(description="A run id, like run-0123456789ab.")]) -> str:
    """Any text that is not a run id names no run: 404, before anything touches the store or disk."""
    if not e.RUN_ID.fullmatch(run_id):
        raise NotFound(f"Run {run_id[:40]!r} does not exist.", "run ids look like 'run-0123456789ab'.")
    return run_id


RunIdPath = Annotated[str, Depends(check_run_id)]


def existing_run(run_id: RunIdPath, services: ServicesDep) -> e.Run:
    return services.runs.get(run_id)


RunDep = Annotated[Any, Depends(existing_run)]


def image_upload(
    file: Annotated[UploadFile, File(description="One image: JPEG, PNG, BMP, GIF, TIFF or WebP, at most 20 MiB.")],
) -> bytes:
    """The uploaded image's bytes; 413 past UPLOAD_LIMIT (the runtime decodes them and says what is wrong)."""
    data = file.file.read(UPLOAD_LIMIT + 1)
    if len(data) > UPLOAD_LIMIT:
        raise PayloadTooLarge(f"The image is larger than {UPLOAD_LIMIT >> 20} MiB.", "send a smaller image.")
    return data


ImageUpload = Annotated[bytes, Depends(image_upload)]
