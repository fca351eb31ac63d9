"""Sweeps: a parent run whose children are trials, each an ordinary run with settings from a search space.

`modelbuilder train --search auto|space.yaml`, `Experiment.submit(..., search=...)` and `POST /api/v1/runs`
with `search` all read the space with `sweep_settings` and call `sdk.submit.submit` with it: the recipe,
the data (a folder, a manifest or a data asset) and a starting model are checked as for one run, the
space is read and checked (`training.search`: every mistake in a space file is a
one-line error), and the parent is queued holding the sweep's settings. An agent then starts the
parent's driver (`backends/sweep.py`), which submits the trials. The parent's result is its best
trial's, so waiting, downloading and showing a sweep are those of any run; `leaderboard` is what is
added: every trial with its settings, accuracy, time, status and why it stopped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelbuilder.backends.ranking import standing
from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput
from modelbuilder.training import search

_TRAINING_STOPPED = re.compile(r"; ([^;()]+)\)$")
SWEEP_OPTIONS = ("max_trials", "max_concurrent_trials", "sampling", "early_termination", "evaluation_interval",
                 "delay_evaluation")


def sweep_settings(search_: str | Path | dict[str, Any] | None, **options: Any) -> search.SweepSettings | None:
    """The sweep's settings from `search` (auto or a YAML file) and the options of `SWEEP_OPTIONS` (None:
    not given); None for no search (then no option may be given)."""
    unknown = sorted(set(options) - set(SWEEP_OPTIONS))
    if unknown:
        raise InvalidInput(f"Unknown sweep option(s): {', '.join(unknown)}.", f"use only: {', '.join(SWEEP_OPTIONS)}.")
    if search_ is None:
        stray = sorted(key for key, value in options.items() if value is not None)
        if stray:
            raise InvalidInput(f"{', '.join(stray)} {'is an option' if len(stray) == 1 else 'are options'} of a "
                               "search, but no search was asked for.",
                               "add search 'auto' (or a space file), or leave the search options out.")
        return None
    if isinstance(search_, dict):  # the space itself (the API's body)
        (space, from_file), shown = search.parse_sweep(search_), "inline"
    else:
        space, from_file = search.load_search(search_)
        shown = search.AUTO if str(search_) == search.AUTO else Path(search_).name
    given = {**from_file, **{key: value for key, value in options.items() if value is not None}}
    return search.SweepSettings(space=space, search=shown, **given)


@dataclass(frozen=True)
class Trial:
    """One row of a sweep's leaderboard."""

    number: int
    run_id: str
    settings: dict[str, Any]  # by the space's names
    accuracy: float | None
    seconds: float | None  # from its start to its end (or now)
    status: str
    why: str  # why it stopped: its status reason
    stopped: str  # the same in a few words: "early termination", "completed", "time budget", "Failed", ...
    early_terminated: bool
    best: bool
    epochs: int | None  # epochs it trained
    planned_epochs: int | None  # epochs its schedule planned
    ended_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def leaderboard(services: Services, run: e.Run) -> list[Trial]:
    """A sweep's trials, best first (`backends.ranking.standing`: the order the best trial is chosen by)."""
    if not run.is_sweep:
        raise InvalidInput(f"Run {run.id} is not a sweep.", "show the leaderboard of a run submitted with --search.")
    children = services.runs.children(run.id)
    best_id = None
    if run.best_metrics.get("best_trial") is not None:
        best_id = next((c.id for c in children if (c.trial or {}).get("number") == run.best_metrics["best_trial"]),
                       None)
    now = e.utcnow()
    rows = []
    for child in children:
        accuracy = child.best_metrics.get("accuracy") if child.status in (e.COMPLETED, e.CANCELED) else None
        seconds = ((child.ended_at or now) - child.started_at).total_seconds() if child.started_at else None
        epochs, planned = child.progress.get("epoch"), child.progress.get("epochs")
        rows.append(Trial(number=int((child.trial or {}).get("number", -1)), run_id=child.id,
                          settings=dict((child.trial or {}).get("params", {})), accuracy=accuracy, seconds=seconds,
                          status=child.status, why=child.status_reason, stopped=_stopped(child),
                          early_terminated=child.early_terminated,
                          best=child.id == best_id, epochs=int(epochs) if isinstance(epochs, int | float) else None,
                          planned_epochs=int(planned) if isinstance(planned, int | float) else None,
                          ended_at=child.ended_at.isoformat() if child.ended_at else None))
    standings = {c.id: standing(c) for c in children}
    return sorted(rows, key=lambda t: (standings[t.run_id], t.number))


def _stopped(child: e.Run) -> str:
    if child.early_terminated:
        return "early termination"
    # The worker ends a trained run with "validation accuracy A (best epoch N; <why training stopped>)".
    found = _TRAINING_STOPPED.search(child.status_reason) if child.status == e.COMPLETED else None
    return found.group(1) if found else child.status


def best_so_far(trials: list[Trial]) -> list[tuple[str, float]]:
    """(when, best validation accuracy until then) at each trial's end, in time order: the sweep's curve."""
    curve, best = [], None
    for trial in sorted((t for t in trials if t.accuracy is not None and t.ended_at), key=lambda t: t.ended_at or ""):
        best = trial.accuracy if best is None else max(best, trial.accuracy)  # type: ignore[type-var]
        curve.append((trial.ended_at or "", float(best)))  # type: ignore[arg-type]
    return curve
