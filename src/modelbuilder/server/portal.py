"""The portal: server-rendered pages (Jinja, autoescaped) that small scripts in static/ keep live.

    /                                        the home page (home.py, with /new: New training)
    /workspaces                              workspaces
    /workspaces/{ws}                         computes (state, error), experiments, recent runs
    /workspaces/{ws}/experiments/{name}      runs table (sortable), compare selected runs' curves
    /workspaces/{ws}/models                  registered models: versions, their source runs, metrics, aliases
    /workspaces/{ws}/runs/{run_id}           the run page: status, progress, charts, log, data report,
                                             evaluation, downloads, "try the model"
    /workspaces/{ws}/runs/{run_id}/gallery   the validation images of a confusion-matrix cell or a label,
                                             the most confidently wrong first (sdk.insight.errors)
    /workspaces/{ws}/runs/{run_id}/suspects  the images whose label is likely wrong, by rank
    /login, /logout                          the token sign-in (only when the server has a token)

Pages render what the store holds at request time; the run page's script then listens to the run's event
stream (server-sent events, routers/events.py; it polls the JSON API where the stream cannot be used), so
status, charts and the log move without a reload. Data reaches scripts only through
`data-*` attributes and JSON responses, never through inline script, and the pages' CSP forbids inline code.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from modelbuilder import __version__
from modelbuilder.sdk import insight, registry, sweep
from modelbuilder.server import sweep_view
from modelbuilder.server.auth import COOKIE, safe_next, session_value, token_matches
from modelbuilder.server.deps import ServicesDep, check_run_id, run_in, run_public
from modelbuilder.server.schemas import EXPERIMENT_PATTERN, WORKSPACE_PATTERN

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"
RECENT_RUNS = 20
EXPERIMENT_RUNS = 500

Workspace = Annotated[str, PathParam(pattern=WORKSPACE_PATTERN)]
Experiment = Annotated[str, PathParam(pattern=EXPERIMENT_PATTERN)]


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _accuracy(metrics: dict[str, Any]) -> float | None:
    value = metrics.get("accuracy", metrics.get("val_accuracy"))
    return float(value) if isinstance(value, int | float) else None


env = Environment(loader=FileSystemLoader(TEMPLATES),
                  autoescape=select_autoescape(default=True, default_for_string=True))
env.filters.update(when=_when, duration=_duration)
env.globals.update(version=__version__, accuracy=_accuracy)


def page(request: Request, template: str, status_code: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    signed_in = bool(request.app.state.server.settings.token) and template != "login.html"  # offers "Sign out"
    html = env.get_template(template).render(request=request, signed_in=signed_in, **context)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def render_error(request: Request, status: int, body: dict[str, str], headers: dict[str, str] | None) -> Response:
    return page(request, "error.html", status_code=status, headers=headers, error=body, status=status,
                title=f"{status} {body.get('code', 'error')}")


# --- sign-in ---------------------------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002 - the query parameter's name
    if not request.app.state.server.settings.token:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", next=safe_next(next), title="Sign in")


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=1024)] = "",
                next: Annotated[str, Form(max_length=2048)] = "/") -> Response:  # noqa: A002
    expected = request.app.state.server.settings.token
    if not expected:
        return RedirectResponse(safe_next(next), status_code=303)
    if not token_matches(token, expected):
        await anyio.sleep(0.5)  # slows down guessing; the token itself is long
        return page(request, "login.html", status_code=401, next=safe_next(next), title="Sign in",
                    failed=True)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(COOKIE, session_value(expected), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# --- pages ---------------------------------------------------------------------------------------------
@router.get("/workspaces")
def workspaces_page(request: Request, services: ServicesDep) -> Response:
    return page(request, "workspaces.html", workspaces=services.workspaces.list(), title="Workspaces")


@router.get("/workspaces/{workspace}")
def workspace_page(request: Request, workspace: Workspace, services: ServicesDep) -> Response:
    ws = services.workspaces.get(workspace)
    runs = services.runs.list(workspace, limit=EXPERIMENT_RUNS)
    names = {ws.id: ws.name}
    counts = Counter(run.experiment_name for run in runs)
    return page(request, "workspace.html", workspace=ws, computes=services.computes.list(workspace),
                experiments=services.workspaces.list_experiments(workspace), counts=counts,
                runs=[run_public(services, run, names) for run in runs[:RECENT_RUNS]], title=ws.name)


@router.get("/workspaces/{workspace}/models")
def models_page(request: Request, workspace: Workspace, services: ServicesDep) -> Response:
    ws = services.workspaces.get(workspace)
    return page(request, "models.html", workspace=ws, models=registry.models(services, workspace),
                title=f"Models - {ws.name}")


@router.get("/workspaces/{workspace}/experiments/{experiment}")
def experiment_page(request: Request, workspace: Workspace, experiment: Experiment, services: ServicesDep
                    ) -> Response:
    ws = services.workspaces.get(workspace)
    exp = services.workspaces.get_experiment(workspace, experiment)
    runs = services.runs.list(workspace, experiment=experiment, limit=EXPERIMENT_RUNS)
    names = {ws.id: ws.name}
    return page(request, "experiment.html", workspace=ws, experiment=exp,
                runs=[run_public(services, run, names) for run in runs], title=f"{exp.name} - {ws.name}")


@router.get("/workspaces/{workspace}/runs/{run_id}")
def run_page(request: Request, workspace: Workspace, run_id: str, services: ServicesDep) -> Response:
    run = run_in(services, workspace, check_run_id(run_id))
    public = run_public(services, run, {run.workspace_id: workspace})
    trials = sweep.leaderboard(services, run) if run.is_sweep else None
    return page(request, "run.html", workspace=workspace, run=public, history=services.runs.history(run.id),
                title=f"{run.id} - {run.experiment_name}", trials=trials, sweep=run.sweep,
                curve=sweep_view.best_curve(run, trials) if trials else None,
                coordinates=sweep_view.parallel_coordinates(run.sweep["space"], trials) if trials and run.sweep
                else None)


GalleryLabel = Annotated[str | None, Query(min_length=1, max_length=200)]


@router.get("/workspaces/{workspace}/runs/{run_id}/gallery")
def gallery_page(request: Request, workspace: Workspace, run_id: str, services: ServicesDep,
                 true: GalleryLabel = None, predicted: GalleryLabel = None, label: GalleryLabel = None,
                 include_correct: Annotated[bool, Query(alias="all")] = False) -> Response:
    run = run_in(services, workspace, check_run_id(run_id))
    rows = insight.errors(services, run, label=label, true=true, predicted=predicted, include_correct=include_correct)
    if true and predicted:
        what = f"true {true!r}, predicted {predicted!r}"
    elif true or predicted or label:
        what = f"true {true!r}" if true else f"predicted {predicted!r}" if predicted else f"label {label!r}"
    else:
        what = "every label"
    return page(request, "gallery.html", workspace=workspace, run=run, rows=rows, what=what,
                wrong=sum(not row.correct for row in rows), kind="predictions", title=f"Images: {what} - {run.id}")


@router.get("/workspaces/{workspace}/runs/{run_id}/suspects")
def suspects_page(request: Request, workspace: Workspace, run_id: str, services: ServicesDep) -> Response:
    run = run_in(services, workspace, check_run_id(run_id))
    found = insight.data_report(services, run).get("suspects") or {}
    return page(request, "suspects.html", workspace=workspace, run=run, found=found, kind="suspects",
                title=f"Likely wrong labels - {run.id}")
