"""What leaves the store: plain frozen dataclasses, plus the run and compute state machines.

ORM rows never leave `modelbuilder.core`; services return these. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# --- run statuses -----------------------------------------------------------------------------------
QUEUED = "Queued"
PREPARING = "Preparing"
RUNNING = "Running"
FINALIZING = "Finalizing"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELED = "Canceled"
PREEMPTED = "Preempted"

RUN_STATUSES = (QUEUED, PREPARING, RUNNING, FINALIZING, COMPLETED, FAILED, CANCELED, PREEMPTED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
# A run in one of these is held by a worker through a lease.
HELD = frozenset({PREPARING, RUNNING, FINALIZING})
ACTIVE = frozenset(RUN_STATUSES) - TERMINAL

# Allowed status changes. Any non-terminal status may end in Failed or Canceled; a held run may be
# preempted, or go back to the queue (its lease expired, or it failed and has error retries left).
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({PREPARING, FAILED, CANCELED}),
    PREPARING: frozenset({RUNNING, PREEMPTED, QUEUED, FAILED, CANCELED}),
    RUNNING: frozenset({FINALIZING, PREEMPTED, QUEUED, FAILED, CANCELED}),
    FINALIZING: frozenset({COMPLETED, PREEMPTED, QUEUED, FAILED, CANCELED}),
    PREEMPTED: frozenset({QUEUED, FAILED, CANCELED}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


# --- compute states ---------------------------------------------------------------------------------
CREATING = "Creating"
SUCCEEDED = "Succeeded"
COMPUTE_FAILED = "Failed"
DELETING = "Deleting"
COMPUTE_STATES = (CREATING, SUCCEEDED, COMPUTE_FAILED, DELETING)

# --- ids --------------------------------------------------------------------------------------------
RUN_ID = re.compile(r"run-[0-9a-f]{12}")


def new_id(prefix: str) -> str:
    """A short, unguessable, URL-safe id; never derived from user input."""
    return f"{prefix}-{secrets.token_hex(6)}"


def new_run_id() -> str:
    return new_id("run")


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- entities ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    region: str
    resource_group: str
    created_at: datetime


@dataclass(frozen=True)
class Experiment:
    id: str
    workspace_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ExperimentSummary:
    """An experiment as a list shows it: with its number of runs and its newest run's status (None before
    its first run)."""

    experiment: Experiment
    runs: int
    latest_status: str | None


@dataclass(frozen=True)
class Compute:
    id: str
    workspace_id: str
    name: str
    size: str
    priority: str
    kind: str
    address: str | None
    state: str
    error: str | None
    created_at: datetime
    updated_at: datetime


def trial_share(trial: dict[str, Any] | None) -> int:
    """How many trials share the compute of a trial with these settings (`Run.trial`); 1 for a plain run."""
    return max(1, int((trial or {}).get("share", 1)))


@dataclass(frozen=True)
class Run:
    id: str
    workspace_id: str
    experiment_id: str
    experiment_name: str
    compute_id: str | None  # None once its compute was deleted
    compute_name: str
    status: str
    status_reason: str
    recipe: dict[str, Any]
    project_name: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    attempt: int
    lease_owner: str | None
    lease_expires_at: datetime | None
    preemptions: int
    error_retries: int
    max_error_retries: int
    max_preemptions: int | None  # None: unlimited
    resume_from: str | None  # checkpoint path relative to the run's artifact folder
    progress: dict[str, Any]
    best_metrics: dict[str, float]
    error: str | None
    idempotency_key: str | None
    request_hash: str
    compute_seconds: float
    cost: float
    cancel_requested: bool
    preempt_requested: bool
    # Beyond the core fields: what the price was based on, and where a resume starts.
    compute_size: str = ""
    priority: str = "dedicated"
    resume_epoch: int | None = None
    resume_step: int | None = None
    preempt_reason: str | None = None
    # Sweeps: a trial names its parent; a parent holds its search settings, a trial its number and settings.
    parent_run_id: str | None = None
    sweep: dict[str, Any] | None = None
    trial: dict[str, Any] | None = None
    termination_reason: str | None = None  # the sweep stopped this trial early (it ends Completed)

    @property
    def is_sweep(self) -> bool:
        return self.sweep is not None

    @property
    def share(self) -> int:
        """How many trials of its sweep share this trial's compute at once (1: a run holds all of it)."""
        return trial_share(self.trial)

    @property
    def early_terminated(self) -> bool:
        """A trial its sweep stopped early (it ends Completed, with its best epoch exported)."""
        return bool(self.termination_reason) and self.status == COMPLETED

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def held(self) -> bool:
        return self.status in HELD


@dataclass(frozen=True)
class StatusChange:
    run_id: str
    status: str
    reason: str
    at: datetime
    attempt: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Charge:
    """The compute time and cost of one attempt, and who charged it: worker, agent or reaper."""

    run_id: str
    attempt: int
    seconds: float
    cost: float
    by: str
    at: datetime


@dataclass(frozen=True)
class MetricPoint:
    run_id: str
    key: str
    step: int
    value: float
    at: datetime


@dataclass(frozen=True)
class LogLine:
    run_id: str
    seq: int
    at: datetime
    level: str
    message: str
    attempt: int


@dataclass(frozen=True)
class ArtifactRecord:
    run_id: str
    path: str
    size: int
    sha256: str
    created_at: datetime


@dataclass(frozen=True)
class ModelVersion:
    """One version of a registered model: the run whose result it is, and that run's metrics then."""

    model: str
    version: int
    run_id: str
    metrics: dict[str, Any]
    created_at: datetime
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    """A name with numbered versions (1, 2, ...) and aliases (for example production -> 3)."""

    id: str
    workspace_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    versions: tuple[ModelVersion, ...] = ()  # newest first
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> ModelVersion | None:
        return self.versions[0] if self.versions else None


@dataclass(frozen=True)
class DataVersion:
    """One version of a data asset: its images (kept under the artifact root), their labels and the data report."""

    asset: str
    version: int
    digest: str
    images: int
    size: int
    labels: dict[str, int]
    report: dict[str, Any]
    created_at: datetime

    @property
    def ref(self) -> str:
        return f"{self.asset}:{self.version}"


@dataclass(frozen=True)
class DataAsset:
    """A name with numbered versions (1, 2, ...) of uploaded training images."""

    id: str
    workspace_id: str
    name: str
    created_at: datetime
    updated_at: datetime
    versions: tuple[DataVersion, ...] = ()  # newest first

    @property
    def latest(self) -> DataVersion | None:
        return self.versions[0] if self.versions else None


@dataclass(frozen=True)
class DataAssetSummary:
    """A data asset as a list across workspaces shows it: its workspace's name, its name and its latest
    version, the only one loaded (an asset's every version and report are many rows for one line)."""

    workspace: str
    name: str
    latest: DataVersion | None
