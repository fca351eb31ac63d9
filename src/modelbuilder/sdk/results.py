"""A run's results: whether it has them, its evaluation, and a copy of them where the user wants them.

A run has its results once its folder holds RESULT_MARKER (MLModel.zip, written last by the engine).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, step
from modelbuilder.results.bundle import copy_results
from modelbuilder.results.files import METRICS_FILE, RESULT_MARKER


def has_results(services: Services, run_id: str) -> bool:
    return services.artifacts.exists(run_id, RESULT_MARKER)


def require_results(services: Services, run: e.Run) -> Path:
    """The run's folder, once it holds the run's results; Conflict (409) before."""
    if not has_results(services, run.id):
        raise no_results(run)
    return services.artifacts.run_dir(run.id)


def no_results(run: e.Run) -> Conflict:
    """The error of asking for the results of a run that has none yet."""
    return Conflict(f"Run {run.id} has no results yet ({run.status}).",
                    "wait until it is Completed ({follow}), then try again.",
                    {"follow": step("follow_run", run=run.id)})


def evaluation(services: Services, run: e.Run) -> dict[str, Any]:
    """metrics.json of a finished run: accuracy, the per-label table, the confusion matrix, the history."""
    path = require_results(services, run) / METRICS_FILE
    return dict(json.loads(path.read_text()))


def project_name(run: e.Run) -> str:
    """The <Name> of the run's generated projects."""
    return run.project_name or "MLModel"


def download(services: Services, run: e.Run, output: str | Path) -> dict[str, Path]:
    """Copy `<Name>.ConsoleApp`, `<Name>.Model`, `<Name>.WebApi` and the three assets of the run into `output`."""
    return copy_results(require_results(services, run), project_name(run), Path(output).expanduser())
