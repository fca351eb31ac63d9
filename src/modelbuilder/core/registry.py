"""Registered models: a name with numbered versions (1, 2, ...), each a run's result, and aliases that
name a version (`production` -> 3) for serving to ask for.

Names are unique per workspace, as experiments are. A version is numbered inside the write that adds it,
with the model's row locked (SQLite: the write lock of BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR
UPDATE), so two registrations at the same moment get two numbers, never the same one.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from modelbuilder import names
from modelbuilder.core import _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.store import Store
from modelbuilder.errors import NotFound, step


class ModelRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store

    def register(self, workspace: str, run_id: str, name: str, metrics: dict[str, Any],
                 alias: str | None = None) -> e.ModelVersion:
        """The run's result as the next version of `name` (made on first use); `alias` then names it."""
        names.model_name(name)
        if alias is not None:
            names.model_alias(alias)
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, workspace)
            run = session.get(r.RunRow, run_id)
            if run is None or run.workspace_id != ws.id:
                raise NotFound(f"Run {run_id} does not exist in workspace {workspace!r}.",
                               "list the workspace's runs ({list}) and register one of them.",
                               {"list": step("list_runs", workspace=workspace)})
            model = _lookup.ensure_named_row(self.store, session, MODELS, ws, name, "model", lock=True)
            latest = session.scalar(select(func.max(r.ModelVersionRow.version))
                                    .where(r.ModelVersionRow.model_id == model.id))
            now = e.utcnow()
            version = r.ModelVersionRow(model_id=model.id, version=(latest or 0) + 1, run_id=run_id,
                                        metrics=dict(metrics), created_at=now)
            session.add(version)
            model.updated_at = now
            if alias is not None:
                self._point(session, model.id, alias, version.version)
            session.flush()
            return _version(name, version, self._aliases(session, model.id))

    def list(self, workspace: str) -> builtins.list[e.RegisteredModel]:
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            rows = session.scalars(select(r.RegisteredModelRow).where(r.RegisteredModelRow.workspace_id == ws.id)
                                   .order_by(r.RegisteredModelRow.name))
            return [self._entity(session, row) for row in rows]

    def get(self, workspace: str, name: str) -> e.RegisteredModel:
        with self.store.read() as session:
            return self._entity(session, self._model(session, workspace, name))

    def version(self, workspace: str, name: str, which: int | str | None = None) -> e.ModelVersion:
        """A version by number, by alias (a str), or the latest (None)."""
        with self.store.read() as session:
            model = self._model(session, workspace, name)
            number = self._number(session, model, which)
            row = session.get(r.ModelVersionRow, (model.id, number))
            if row is None:
                raise NotFound(f"Model {name!r} has no version {number}.",
                               "pick one of its versions ({show}).", _show(workspace, name))
            return _version(name, row, self._aliases(session, model.id))

    def set_alias(self, workspace: str, name: str, alias: str, version: int) -> e.ModelVersion:
        names.model_alias(alias)
        names.model_version(version)
        with self.store.write() as session:
            model = self._model(session, workspace, name)
            row = session.get(r.ModelVersionRow, (model.id, version))
            if row is None:
                raise NotFound(f"Model {name!r} has no version {version}.",
                               "point the alias at one of its versions ({show}).", _show(workspace, name))
            self._point(session, model.id, alias, version)
            model.updated_at = e.utcnow()
            session.flush()
            return _version(name, row, self._aliases(session, model.id))

    def remove_alias(self, workspace: str, name: str, alias: str) -> None:
        names.model_alias(alias)
        with self.store.write() as session:
            model = self._model(session, workspace, name)
            gone = session.execute(delete(r.ModelAliasRow).where(r.ModelAliasRow.model_id == model.id,
                                                                 r.ModelAliasRow.alias == alias))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"Model {name!r} has no alias {alias!r}.", "see its aliases ({show}).",
                               _show(workspace, name))

    # --- inside a session ---------------------------------------------------------------------------
    def _model(self, session: Session, workspace: str, name: str) -> r.RegisteredModelRow:
        names.model_name(name)
        return _lookup.named_row(session, MODELS, _lookup.workspace_row(session, workspace), name)

    def _number(self, session: Session, model: r.RegisteredModelRow, which: int | str | None) -> int:
        if isinstance(which, int):
            return names.model_version(which)
        if which is None:
            latest = session.scalar(select(func.max(r.ModelVersionRow.version))
                                    .where(r.ModelVersionRow.model_id == model.id))
            if latest is None:
                raise NotFound(f"Model {model.name!r} has no versions.", "register a run under this name.")
            return int(latest)
        alias = session.get(r.ModelAliasRow, (model.id, names.model_alias(which)))
        if alias is None:
            workspace = session.get(r.WorkspaceRow, model.workspace_id)
            raise NotFound(f"Model {model.name!r} has no alias {which!r}.",
                           "use one of its versions or aliases ({show}).",
                           _show(workspace.name if workspace else "default", model.name))
        return alias.version

    def _point(self, session: Session, model_id: str, alias: str, version: int) -> None:
        now = e.utcnow()
        session.execute(self.store.insert(r.ModelAliasRow)
                        .values(model_id=model_id, alias=alias, version=version, updated_at=now)
                        .on_conflict_do_update(index_elements=["model_id", "alias"],
                                               set_={"version": version, "updated_at": now}))

    def _aliases(self, session: Session, model_id: str) -> dict[str, int]:
        rows = session.scalars(select(r.ModelAliasRow).where(r.ModelAliasRow.model_id == model_id)
                               .order_by(r.ModelAliasRow.alias))
        return {row.alias: row.version for row in rows}

    def _entity(self, session: Session, row: r.RegisteredModelRow) -> e.RegisteredModel:
        aliases = self._aliases(session, row.id)
        versions = session.scalars(select(r.ModelVersionRow).where(r.ModelVersionRow.model_id == row.id)
                                   .order_by(r.ModelVersionRow.version.desc()))
        return e.RegisteredModel(row.id, row.workspace_id, row.name, row.created_at, row.updated_at,
                                 tuple(_version(row.name, v, aliases) for v in versions), aliases)


def _version(name: str, row: r.ModelVersionRow, aliases: dict[str, int]) -> e.ModelVersion:
    return e.ModelVersion(name, row.version, row.run_id, dict(row.metrics), row.created_at,
                          tuple(a for a, v in aliases.items() if v == row.version))


def _show(workspace: str, name: str) -> dict[str, Any]:
    return {"show": step("show_model", workspace=workspace, model=name)}


def _no_model(workspace: str, name: str) -> NotFound:
    return NotFound(f"There is no registered model {name!r} in workspace {workspace!r}.",
                    "list the registered models ({list}), or register a run under this name.",
                    {"list": step("list_models", workspace=workspace)})


MODELS = _lookup.NamedKind(r.RegisteredModelRow, _no_model)
