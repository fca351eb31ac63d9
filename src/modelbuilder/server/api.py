"""The FastAPI app: the REST API under /api/v1, the portal's pages, and, for its lifetime, the scheduler agent.

    app = create_app()                       # settings from MODELBUILDER_* (token, home, store)
    uvicorn.run(app, host="127.0.0.1", port=8765)

The lifespan opens the store, starts an agent that claims queued runs and launches their workers,
and (when the server knows its address) writes `<home>/server.json` so that `modelbuilder train` and
the SDK print the run's page; it removes that file and stops the agent on shutdown. Workers are
processes of their own: they finish their runs even while the server restarts.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from modelbuilder import __version__
from modelbuilder.backends import start_agent
from modelbuilder.config import Settings, get_settings
from modelbuilder.server import API_PREFIX, handlers, home, middleware, portal
from modelbuilder.server.auth import TokenGuard
from modelbuilder.server.deps import ServerState, StateDep
from modelbuilder.server.routers import (
    artifacts,
    computes,
    data,
    events,
    experiments,
    explain,
    exports,
    insight,
    logs,
    metrics,
    models,
    predict,
    runs,
    workspaces,
)
from modelbuilder.server.schemas import ErrorPublic, HealthPublic

log = logging.getLogger("modelbuilder.server")
STATIC = Path(__file__).parent / "static"
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorPublic, "description": what}
    for status, what in ((400, "Bad request"), (401, "Token missing or wrong"), (404, "Not found"),
                         (409, "Conflict with the current state"), (413, "Body too large"),
                         (422, "Invalid input"))
}

health = APIRouter(tags=["server"])


@health.get("/health")
def get_health(state: StateDep) -> HealthPublic:
    """The server answers (and, with a token set, the token is right)."""
    return HealthPublic(status="ok", version=__version__, agent=state.agent is not None,
                        streams=state.feeds.streams, followed_runs=len(state.feeds.feeds))


def _write_server_file(settings: Settings, url: str, agent: bool) -> Path:
    """`{"url", "pid", "agent"}`: where the portal is, and whether this server starts queued runs."""
    path = settings.resolved_home / "server.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".server-{os.getpid()}.json.tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid(), "agent": agent}))
    os.replace(tmp, path)
    return path


def _remove_server_file(path: Path) -> None:
    """Remove server.json if it is still ours (another server may have started on this home since)."""
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def create_app(settings: Settings | None = None, start_agents: bool = True, server_url: str | None = None,
               trusted_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The app. `server_url`: this server's address, written to server.json (the CLI passes it).

    `trusted_hosts`: extra Host names answered without a token besides loopback ones (tests' clients).
    """
    settings = settings or get_settings()
    state = ServerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(lambda: state.services.store)  # open (and migrate a new one) before serving
        if start_agents:
            state.agent = start_agent(state.services.store)
        server_file = _write_server_file(settings, server_url, start_agents) if server_url else None
        try:
            yield
        finally:
            if server_file is not None:
                _remove_server_file(server_file)
            if state.agent is not None:
                await anyio.to_thread.run_sync(state.agent.stop)
                state.agent = None
            state.close()

    app = FastAPI(
        title="modelbuilder",
        version=__version__,
        summary="Train image classifiers on your computes, watch runs live, download results.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.server = state
    handlers.install(app, portal.render_error)
    _install_middleware(app, settings.token, trusted_hosts)

    for router in (health, workspaces.router, experiments.router, computes.router, runs.router, events.router,
                   metrics.router, logs.router, artifacts.router, exports.router, predict.router, explain.router,
                   insight.router, models.router, data.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(home.router)
    app.include_router(portal.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.token:
        _document_bearer(app)
    return app


def _install_middleware(app: FastAPI, token: str | None, trusted_hosts: tuple[str, ...]) -> None:
    """The stack of middleware.py's docstring, in order (Starlette makes the last one added the outermost)."""
    app.add_middleware(middleware.BodyLimit)
    app.add_middleware(TokenGuard, token=token)
    app.add_middleware(middleware.OriginCheck)
    if not token:
        app.add_middleware(middleware.HostCheck, trusted=trusted_hosts)
    app.add_middleware(middleware.CatchAll)
    app.add_middleware(middleware.SecurityHeaders)


def _document_bearer(app: FastAPI) -> None:
    """Say in the OpenAPI document that every operation needs the bearer token (so /docs offers it)."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
