"""What a sweep's page draws, computed here so that the template only places it (no script, no markup
from data): the best accuracy so far against time, and the settings of each trial against its accuracy
(parallel coordinates). Both fit an SVG box of WIDTH x HEIGHT."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from modelbuilder.core import entities as e
from modelbuilder.sdk.sweep import Trial, best_so_far

WIDTH, HEIGHT = 400.0, 160.0
LEFT, RIGHT, TOP, BOTTOM = 30.0, 390.0, 10.0, 140.0
AXES_LEFT, AXES_RIGHT = 45.0, 355.0  # the parallel coordinates' first and last axis: room for their names


def best_curve(run: e.Run, trials: list[Trial]) -> dict[str, Any] | None:
    """The sweep's best accuracy so far at each trial's end, against seconds since the sweep started."""
    points = best_so_far(trials)
    if not points or run.started_at is None:
        return None
    seconds = [(datetime.fromisoformat(when) - run.started_at).total_seconds() for when, _ in points]
    span = max(max(seconds), 1.0)
    placed = [(LEFT + (RIGHT - LEFT) * s / span, BOTTOM - (BOTTOM - TOP) * best)
              for s, (_, best) in zip(seconds, points, strict=True)]
    line = [(LEFT, placed[0][1]), *placed]
    return {"span": span, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in line),
            "marks": [(f"{x:.1f}", f"{y:.1f}", f"{best:.4f} at {int(s)} s")
                      for (x, y), s, (_, best) in zip(placed, seconds, points, strict=True)]}


def _axis(spec: dict[str, Any]) -> Any:
    """A function from a setting's value to [0, 1] on its axis, and the axis's two end labels."""
    if spec.get("type") == "choice":
        choices = [str(v) for v in spec["values"]]
        last = max(1, len(choices) - 1)
        return (lambda v: choices.index(str(v)) / last if str(v) in choices else 0.5), choices[0], choices[-1]
    log = spec.get("type") == "loguniform"
    low, high = spec["min_value"], spec["max_value"]
    if not log:
        return (lambda v: (float(v) - low) / ((high - low) or 1.0)), f"{low:.3g}", f"{high:.3g}"
    return (lambda v: (math.log(float(v)) - low) / ((high - low) or 1.0)), f"{math.exp(low):.3g}", \
        f"{math.exp(high):.3g}"


def parallel_coordinates(space: dict[str, dict[str, Any]], trials: list[Trial]) -> dict[str, Any] | None:
    """One vertical axis per searched setting and a last one for accuracy (0 to 1); one line per trial with
    a result, the best one marked."""
    names = sorted(name for name, spec in space.items() if spec.get("type") != "choice" or len(spec["values"]) > 1)
    done = [t for t in trials if t.accuracy is not None]
    if not names or not done:
        return None
    step = (AXES_RIGHT - AXES_LEFT) / len(names)
    axes = []
    for i, name in enumerate(names):
        place, low, high = _axis(space[name])
        axes.append({"name": name, "x": AXES_LEFT + i * step, "low": low, "high": high, "place": place})
    axes.append({"name": "accuracy", "x": AXES_RIGHT, "low": "0", "high": "1", "place": float})
    lines = []
    for trial in done:
        points = []
        for axis in axes:
            value = trial.accuracy if axis["name"] == "accuracy" else trial.settings.get(axis["name"])
            share = min(1.0, max(0.0, axis["place"](value))) if value is not None else 0.5
            points.append(f"{axis['x']:.1f},{BOTTOM - (BOTTOM - TOP) * share:.1f}")
        lines.append({"points": " ".join(points), "best": trial.best, "label": f"trial {trial.number}: "
                      f"{trial.accuracy:.4f}"})
    return {"axes": [{k: v for k, v in axis.items() if k != "place"} for axis in axes], "lines": lines,
            "top": TOP, "bottom": BOTTOM}
