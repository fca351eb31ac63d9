"""How a sweep's trials rank: the one order the leaderboard shows and the best trial is chosen by.

Apart from the sweep's driver (`backends/sweep.py`), which imports Optuna, so that the CLI and the portal
rank trials without loading it.
"""

from __future__ import annotations

from modelbuilder.core import entities as e
from modelbuilder.training import search


def result_of(trial: e.Run) -> float | None:
    """A finished trial's validation accuracy (its exported best), or None when it has no result."""
    if trial.status not in (e.COMPLETED, e.CANCELED):
        return None
    value = trial.best_metrics.get("accuracy")
    return float(value) if value is not None else None


def standing(trial: e.Run) -> tuple[bool, bool, float, float]:
    """Sort key of a trial, best first: with a result before without, Completed before Canceled (a canceled
    trial was cut short), then validation accuracy, ties to the faster model. The leaderboard's order."""
    result = result_of(trial)
    return (result is None, trial.status != e.COMPLETED,
            *search.rank_key(result, str(trial.recipe.get("architecture")), trial.recipe.get("image_size")))


def best_trial(trials: list[e.Run]) -> e.Run | None:
    """The best trial with a result (`standing`): a canceled one only when none completed."""
    ranked = [t for t in trials if result_of(t) is not None]
    return min(ranked, key=standing) if ranked else None
