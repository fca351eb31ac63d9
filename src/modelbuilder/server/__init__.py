"""The server: REST API (`/api/v1`, OpenAPI at `/openapi.json`), the portal, and the scheduler's agent.

    modelbuilder server [--host 127.0.0.1] [--port 8765] [--token TOKEN]

`create_app` (api.py) builds the app; `portal_url` gives a run's page when a server runs for this home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelbuilder.config import Settings


def create_app(settings: Settings | None = None, start_agents: bool = True, **options: object) -> FastAPI:
    from modelbuilder.server.api import create_app as make

    return make(settings, start_agents, **options)  # type: ignore[arg-type]


def portal_url(workspace: str, run_id: str, settings: Settings | None = None) -> str | None:
    """The run's page on the server configured or running for this home, or None when there is none."""
    from modelbuilder.config import run_url, running_server

    base = running_server(settings)
    return run_url(base, workspace, run_id) if base else None
