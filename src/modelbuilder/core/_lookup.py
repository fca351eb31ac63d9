"""Row lookups shared by the services, inside a session they already opened. Private to the store package."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.store import Store
from modelbuilder.errors import NotFound, step


def workspace_row(session: Session, name: str) -> r.WorkspaceRow:
    row = session.scalars(select(r.WorkspaceRow).where(r.WorkspaceRow.name == name)).one_or_none()
    if row is None:
        raise NotFound(
            f"Workspace {name!r} does not exist.",
            "list the workspaces ({list}), or create this one ({create}).",
            {"list": step("list_workspaces"), "create": step("create_workspace", workspace=name)},
        )
    return row


Named = TypeVar("Named", r.ComputeRow, r.ExperimentRow, r.DataAssetRow, r.RegisteredModelRow)


@dataclass(frozen=True)
class NamedKind(Generic[Named]):
    """Rows named uniquely per workspace (a unique (workspace_id, name)): their table, and the NotFound for a
    name that has none, given the workspace's name and the name."""

    table: type[Named]
    missing: Callable[[str, str], NotFound]


def named_row(session: Session, kind: NamedKind[Named], workspace: r.WorkspaceRow, name: str, *,
              for_update: bool = False) -> Named:
    """The row of `kind` named `name` in `workspace`, locked against concurrent writers when `for_update`
    (PostgreSQL; SQLite locks the file); `kind.missing` when there is none."""
    query = select(kind.table).where(kind.table.workspace_id == workspace.id, kind.table.name == name)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise kind.missing(workspace.name, name)
    return row


def ensure_named_row(store: Store, session: Session, kind: NamedKind[Named], workspace: r.WorkspaceRow, name: str,
                     id_prefix: str, *, lock: bool = False) -> Named:
    """The row of `kind` named `name` in `workspace`, inserted now if there is none (safe against a concurrent
    insert: the unique name decides which one stays), locked for the rest of the write when `lock` (for a caller
    that numbers the row's versions next)."""
    now = e.utcnow()
    values = {"id": e.new_id(id_prefix), "workspace_id": workspace.id, "name": name, "created_at": now}
    if hasattr(kind.table, "updated_at"):
        values["updated_at"] = now
    session.execute(store.insert(kind.table).values(**values)
                    .on_conflict_do_nothing(index_elements=["workspace_id", "name"]))
    return named_row(session, kind, workspace, name, for_update=lock)


def _no_compute(workspace: str, name: str) -> NotFound:
    return NotFound(
        f"Compute {name!r} does not exist in workspace {workspace!r}.",
        "list the workspace's computes ({list}), or create this one ({create}).",
        {"list": step("list_computes", workspace=workspace),
         "create": step("create_compute", workspace=workspace, compute=name)},
    )


def _no_experiment(workspace: str, name: str) -> NotFound:
    return NotFound(
        f"Experiment {name!r} does not exist in workspace {workspace!r}.",
        "list the workspace's experiments ({list}); the first run under a new name registers it.",
        {"list": step("list_experiments", workspace=workspace)},
    )


COMPUTES = NamedKind(r.ComputeRow, _no_compute)
EXPERIMENTS = NamedKind(r.ExperimentRow, _no_experiment)


def register_experiment(store: Store, session: Session, workspace: r.WorkspaceRow, name: str) -> r.ExperimentRow:
    """The experiment `name`, registered now if this is its first run (safe against a concurrent one)."""
    return ensure_named_row(store, session, EXPERIMENTS, workspace, name, "exp")


def run_row(session: Session, run_id: str, *, for_update: bool = False) -> r.RunRow:
    """The run, locked against concurrent writers when `for_update` (PostgreSQL; SQLite locks the file)."""
    if not isinstance(run_id, str) or not e.RUN_ID.fullmatch(run_id):
        raise _no_run(run_id)
    query = select(r.RunRow).where(r.RunRow.id == run_id)
    if for_update:
        query = query.with_for_update()
    row = session.scalars(query).one_or_none()
    if row is None:
        raise _no_run(run_id)
    return row


def _no_run(run_id: object) -> NotFound:
    return NotFound(f"Run {run_id!r} does not exist.", "list the runs ({list}).", {"list": step("list_runs")})


def run_entity(session: Session, row: r.RunRow) -> e.Run:
    name = session.scalar(select(r.ExperimentRow.name).where(r.ExperimentRow.id == row.experiment_id))
    return r.run(row, name or "")
