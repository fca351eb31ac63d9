"""The portal's home page, the New training page and a data asset's page.

    /                                      what is happening: active runs (live progress) across workspaces,
                                           recent runs with their accuracy, computes and their load, data
                                           assets, workspaces; each a link
    /new                                   New training: upload a zip (it becomes a data asset) or pick an
                                           asset, see its labels, counts and data report, set the name, time
                                           budget, compute, start; the page then moves to the live run
    /workspaces/{ws}/data/{name}           a data asset's versions, labels and data report

The pages render what the store holds; `static/home.js` keeps the active runs' progress moving, and
`static/new.js` uploads in chunks through `/api/v1/workspaces/{ws}/data/uploads` and starts the run with
`POST /api/v1/runs`, so the page works wherever the API does (with a token: the portal's session cookie).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from modelbuilder.core import entities as e
from modelbuilder.sdk import data
from modelbuilder.server.deps import ServicesDep, run_public
from modelbuilder.server.portal import Workspace, page
from modelbuilder.server.schemas import MODEL_NAME_PATTERN, WORKSPACE_PATTERN

router = APIRouter(include_in_schema=False)
RECENT = 10
ACTIVE_LIMIT = 200  # active runs shown per workspace


@router.get("/")
def home_page(request: Request, services: ServicesDep) -> Response:
    """Five reads, each across every workspace, however many workspaces, runs and data versions there are.
    A workspace made between them has no name in `names` yet: its runs show under none until the next view."""
    workspaces = services.workspaces.list()
    names = {ws.id: ws.name for ws in workspaces}
    active_runs = services.runs.newest_per_workspace(ACTIVE_LIMIT, e.ACTIVE)
    active = [run_public(services, run, names) for run in active_runs]
    recent = [run_public(services, run, names) for run in services.runs.newest_per_workspace(RECENT, e.TERMINAL)]
    recent.sort(key=lambda run: run.ended_at or run.created_at, reverse=True)
    running = Counter((names.get(run.workspace_id), run.compute_name) for run in active_runs if run.held)
    waiting = Counter((names.get(run.workspace_id), run.compute_name) for run in active_runs
                      if run.status == e.QUEUED)
    computes = [(ws, c, running[ws, c.name], waiting[ws, c.name]) for ws, c in services.computes.list_all()]
    return page(request, "home.html", workspaces=workspaces, active=active, recent=recent[:RECENT],
                computes=computes, assets=services.data.list_all(), title="Home")


@router.get("/new")
def new_training_page(request: Request, services: ServicesDep,
                      workspace: Annotated[str | None, Query(pattern=WORKSPACE_PATTERN)] = None,
                      data_ref: Annotated[str | None, Query(alias="data", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,63}"
                                                                                  r"(:[0-9]{1,10})?$")] = None,
                      ) -> Response:
    name, _ = services.workspaces.in_use(workspace)
    return page(request, "new.html", workspace=name, workspaces=services.workspaces.list(), preset=data_ref,
                computes=[c for c in services.computes.list(name) if c.state == e.SUCCEEDED],
                assets=data.assets(services, name), title="New training")


@router.get("/workspaces/{workspace}/data/{name}")
def data_page(request: Request, workspace: Workspace, services: ServicesDep,
              name: Annotated[str, PathParam(pattern=MODEL_NAME_PATTERN)],
              version: Annotated[int | None, Query(ge=1)] = None) -> Response:
    asset = data.show(services, name, workspace)
    shown = data.version(services, f"{name}:{version}" if version else name, workspace)
    return page(request, "data.html", workspace=workspace, asset=asset, shown=shown,
                title=f"Data {shown.ref} - {workspace}")
