"""The API's schemas of sweeps: what `POST /api/v1/runs` takes to start one, and a leaderboard's row."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelbuilder.sdk.sweep import Trial


class SearchCreate(BaseModel):
    """A sweep instead of one run: trials with settings from `search`, the best one's result."""

    model_config = ConfigDict(extra="forbid")

    search: str | dict[str, Any] = Field(description="'auto' (a built-in space around the default recipe), the "
                                                     "path of a YAML space file on the server, or the space itself "
                                                     "({'learning_rate': 'uniform(0.001, 0.01)', ...}).")
    max_trials: int | None = Field(default=None, description="Trials at most (default 10).")
    max_concurrent_trials: int | None = Field(default=None, description="Trials at once (default 1).")
    sampling: Literal["random", "grid", "bayesian"] | None = None
    early_termination: Literal["none", "median", "hyperband"] | None = None
    evaluation_interval: int | None = Field(default=None, description="Apply early termination every N epochs.")
    delay_evaluation: int | None = Field(default=None, description="Apply early termination from epoch N on.")

    def options(self) -> dict[str, Any]:
        return self.model_dump(exclude={"search"})


class TrialPublic(BaseModel):
    number: int
    run_id: str
    settings: dict[str, Any]
    accuracy: float | None
    seconds: float | None
    status: str
    why: str = Field(description="Why it stopped: its status reason ('early termination (...)' when the sweep "
                                 "stopped it).")
    stopped: str = Field(description="Why it stopped, in a few words: early termination, completed, early "
                                     "stopping, time budget, or its status.")
    early_terminated: bool
    best: bool
    epochs: int | None
    planned_epochs: int | None
    ended_at: str | None

    @classmethod
    def of(cls, trial: Trial) -> TrialPublic:
        return cls(**trial.to_dict())
