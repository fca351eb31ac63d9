"""Row lookups shared by the services, inside a session they already opened. Private to the store package."""

from __future__ import annotations

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


def compute_row(session: Session, workspace: r.WorkspaceRow, name: str) -> r.ComputeRow:
    row = session.scalars(
        select(r.ComputeRow).where(r.ComputeRow.workspace_id == workspace.id, r.ComputeRow.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"Compute {name!r} does not exist in workspace {workspace.name!r}.",
            "list the workspace's computes ({list}), or create this one ({create}).",
            {"list": step("list_computes", workspace=workspace.name),
             "create": step("create_compute", workspace=workspace.name, compute=name)},
        )
    return row


def experiment_row(session: Session, workspace: r.WorkspaceRow, name: str) -> r.ExperimentRow:
    row = session.scalars(
        select(r.ExperimentRow).where(r.ExperimentRow.workspace_id == workspace.id, r.ExperimentRow.name == name)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"Experiment {name!r} does not exist in workspace {workspace.name!r}.",
            "list the workspace's experiments ({list}); the first run under a new name registers it.",
            {"list": step("list_experiments", workspace=workspace.name)},
        )
    return row


def register_experiment(store: Store, session: Session, workspace: r.WorkspaceRow, name: str) -> r.ExperimentRow:
    """The experiment `name`, registered now if this is its first run (safe against a concurrent one)."""
    insert = store.insert(r.ExperimentRow).values(
        id=e.new_id("exp"), workspace_id=workspace.id, name=name, created_at=e.utcnow()
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["workspace_id", "name"]))
    return experiment_row(session, workspace, name)


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
