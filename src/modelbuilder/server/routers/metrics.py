"""`/api/v1/runs/{run_id}/metrics`: what a run logged per epoch (train/val loss and accuracy, images/s, lr).

All of them, one key's series, or every key at one step (epoch).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.schemas import MetricPointPublic, StepMetricsPublic

router = APIRouter(prefix="/runs/{run_id}", tags=["metrics"])
MetricKey = Annotated[str, Path(min_length=1, max_length=250, description="A metric, e.g. val_accuracy.")]


@router.get("/metrics")
def list_metrics(
    run: RunDep,
    services: ServicesDep,
    key: Annotated[str | None, Query(min_length=1, max_length=250)] = None,
    step: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    after_step: Annotated[int | None, Query(ge=0, le=1_000_000, description="Only the steps after this one: "
                                            "what a follower has not seen yet.")] = None,
) -> list[MetricPointPublic]:
    """Every metric point, by key then step; optionally only one key, one step, and/or the steps after one."""
    points = services.recorder.metrics(run.id, key=key, after_step=after_step)
    return [MetricPointPublic.of(p) for p in points if step is None or p.step == step]


@router.get("/metrics/{key}")
def metric_series(run: RunDep, key: MetricKey, services: ServicesDep) -> list[MetricPointPublic]:
    """One metric's values, one per step (an empty list when the run has not logged it yet)."""
    return [MetricPointPublic.of(p) for p in services.recorder.metrics(run.id, key=key)]


@router.get("/steps/{step}/metrics")
def step_metrics(
    run: RunDep, step: Annotated[int, Path(ge=0, le=1_000_000)], services: ServicesDep
) -> StepMetricsPublic:
    """Every metric at one step (epoch)."""
    values: dict[str, float | None] = {p.key: p.value for p in services.recorder.metrics(run.id) if p.step == step}
    return StepMetricsPublic(step=step, values=values)
