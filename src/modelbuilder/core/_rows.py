"""ORM rows: private to the store package. Services turn them into entities before returning.

The schema itself is created and changed only by the Alembic migrations in `migrations/versions`;
a test compares these rows with the migrated schema so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from modelbuilder.core import entities as e

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite (which keeps no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        value = value.astimezone(UTC)
        # SQLite stores text; naive UTC text compares correctly in lease-expiry queries.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class WorkspaceRow(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(33), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    resource_group: Mapped[str] = mapped_column(String(90))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ExperimentRow(Base):
    __tablename__ = "experiments"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ComputeRow(Base):
    __tablename__ = "computes"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(16))
    size: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("workspace_id", "idempotency_key"),
        Index(None, "status", "compute_id"),
        Index(None, "workspace_id", "created_at"),
        Index(None, "status", "lease_expires_at"),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    compute_id: Mapped[str | None] = mapped_column(ForeignKey("computes.id", ondelete="SET NULL"))
    compute_name: Mapped[str] = mapped_column(String(16))
    compute_size: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(Text)
    recipe: Mapped[dict[str, Any]] = mapped_column(JSON)
    project_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # the claim or the last heartbeat
    preemptions: Mapped[int] = mapped_column(Integer, default=0)
    error_retries: Mapped[int] = mapped_column(Integer, default=0)
    max_error_retries: Mapped[int] = mapped_column(Integer)
    max_preemptions: Mapped[int | None] = mapped_column(Integer)
    resume_from: Mapped[str | None] = mapped_column(Text)
    resume_epoch: Mapped[int | None] = mapped_column(Integer)
    resume_step: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    best_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    compute_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    preempt_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    preempt_reason: Mapped[str | None] = mapped_column(Text)
    log_seq: Mapped[int] = mapped_column(Integer, default=0)  # last log line number handed out
    # Sweeps (migration 0004): a trial's parent, a parent's search settings, a trial's number and settings.
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    sweep: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    trial: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    termination_reason: Mapped[str | None] = mapped_column(Text)  # stopped early by its sweep, and why


class StatusChangeRow(Base):
    __tablename__ = "run_status_changes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class ChargeRow(Base):
    """The compute time and cost of one attempt, charged once (see `_billing`)."""

    __tablename__ = "run_charges"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    seconds: Mapped[float] = mapped_column(Float)
    cost: Mapped[float] = mapped_column(Float)
    by: Mapped[str] = mapped_column(String(16))  # worker | agent | reaper
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class MetricRow(Base):
    __tablename__ = "run_metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)  # NULL stands for NaN (SQLite cannot keep NaN)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer)


class LogRow(Base):
    __tablename__ = "run_logs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)


class ArtifactRow(Base):
    __tablename__ = "run_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- rows -> entities -------------------------------------------------------------------------------
class RegisteredModelRow(Base):
    """A name with numbered versions (see `core/registry.py`)."""

    __tablename__ = "registered_models"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    model_id: Mapped[str] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DataAssetRow(Base):
    """A name with numbered versions of uploaded images (see `core/datasets.py`)."""

    __tablename__ = "data_assets"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DataVersionRow(Base):
    __tablename__ = "data_versions"
    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))  # of the content: every image's path, label and SHA-256
    images: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)  # label -> images
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RunDataRow(Base):
    """The data asset version a run trains on (a run on a local path has none)."""

    __tablename__ = "run_data"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)


def workspace(row: WorkspaceRow) -> e.Workspace:
    return e.Workspace(row.id, row.name, row.region, row.resource_group, row.created_at)


def experiment(row: ExperimentRow) -> e.Experiment:
    return e.Experiment(row.id, row.workspace_id, row.name, row.created_at)


def compute(row: ComputeRow) -> e.Compute:
    return e.Compute(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        size=row.size,
        priority=row.priority,
        kind=row.kind,
        address=row.address,
        state=row.state,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def run(row: RunRow, experiment_name: str) -> e.Run:
    return e.Run(
        id=row.id,
        workspace_id=row.workspace_id,
        experiment_id=row.experiment_id,
        experiment_name=experiment_name,
        compute_id=row.compute_id,
        compute_name=row.compute_name,
        status=row.status,
        status_reason=row.status_reason,
        recipe=dict(row.recipe or {}),
        project_name=row.project_name,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        attempt=row.attempt,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        preemptions=row.preemptions,
        error_retries=row.error_retries,
        max_error_retries=row.max_error_retries,
        max_preemptions=row.max_preemptions,
        resume_from=row.resume_from,
        progress=dict(row.progress or {}),
        best_metrics=dict(row.best_metrics or {}),
        error=row.error,
        idempotency_key=row.idempotency_key,
        request_hash=row.request_hash,
        compute_seconds=row.compute_seconds,
        cost=row.cost,
        cancel_requested=row.cancel_requested,
        preempt_requested=row.preempt_requested,
        compute_size=row.compute_size,
        priority=row.priority,
        resume_epoch=row.resume_epoch,
        resume_step=row.resume_step,
        preempt_reason=row.preempt_reason,
        parent_run_id=row.parent_run_id,
        sweep=dict(row.sweep) if row.sweep is not None else None,
        trial=dict(row.trial) if row.trial is not None else None,
        termination_reason=row.termination_reason,
    )


def status_change(row: StatusChangeRow) -> e.StatusChange:
    return e.StatusChange(row.run_id, row.status, row.reason, row.at, row.attempt, dict(row.details or {}))


def charge(row: ChargeRow) -> e.Charge:
    return e.Charge(row.run_id, row.attempt, row.seconds, row.cost, row.by, row.at)


def metric(row: MetricRow) -> e.MetricPoint:
    value = float("nan") if row.value is None else row.value
    return e.MetricPoint(row.run_id, row.key, row.step, value, row.at)


def log_line(row: LogRow) -> e.LogLine:
    return e.LogLine(row.run_id, row.seq, row.at, row.level, row.message, row.attempt)


def artifact(row: ArtifactRow) -> e.ArtifactRecord:
    return e.ArtifactRecord(row.run_id, row.path, row.size, row.sha256, row.created_at)
