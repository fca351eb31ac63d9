"""The application layer: what a user can do, written once and reached from the CLI, the SDK's objects and
the REST API alike, so the same input gets the same answer and the same error from all three.

    submit.py   the recipe from its sources, the full data check, the workspace, idempotency
    wait.py     a run's events, with an agent running the queue while waiting when no server does
    runs.py     runs listed, shown, followed, canceled, downloaded, examined: from the store or a server's API
    workspaces.py  workspaces (create, list, show, delete, the one in use) and their experiments: the same
    computes.py    computes (create, list, show, delete, evict) and the size catalog: the same
    results.py  whether a run has results, its evaluation, a copy of them
    export.py   an int8 version of a trained model, measured against the float one
    explain.py  heatmaps of where a run's network finds a label in an image (Captum; needs its checkpoint)
    models.py   which model a name means (a run id, an MLModel.zip); Model, to predict and score with it
    scoring.py  batch scoring of a folder or manifest into CSV / JSON Lines, decoding beside the model
    sweep.py    sweeps: a parent run whose trials try settings from a search space; the leaderboard
    objects.py  Workspace, Computes, Experiment and Run: the SDK's objects over all of the above

Every function takes the one `core.services.Services` of its caller. Faces (`cli/`, `server/`) read
their input, call these, and render the result; they never import each other.
"""

from __future__ import annotations

from modelbuilder.errors import InvalidInput, ModelBuilderError
from modelbuilder.sdk.models import Model
from modelbuilder.sdk.objects import Computes, Experiment, Run, Workspace, default_services

__all__ = ["Computes", "Experiment", "InvalidInput", "Model", "ModelBuilderError", "Run", "Workspace",
           "default_services"]
