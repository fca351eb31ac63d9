"""Workspaces and their experiments, and the default workspace a user works in.

A workspace is the central place for every resource of training: its experiments, computes and
runs. Names are unique per store. `workspace use NAME` remembers a default in the home folder's
`context.json` (`WorkspaceContext`, which needs no store: a client of a remote server remembers its choice
the same way); `ensure_default()` gives the one-command path a workspace and a compute to run on.
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
import time
from collections.abc import Callable

from sqlalchemy import delete, select

from modelbuilder import names
from modelbuilder.config import Settings, get_settings
from modelbuilder.core import _lifecycle, _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.store import Store
from modelbuilder.errors import AlreadyExists, Conflict, NotFound, step

DEFAULT_WORKSPACE = "default"
DEFAULT_REGION = "local"
DEFAULT_RESOURCE_GROUP = "default"
DEFAULT_COMPUTE = "local"


class WorkspaceContext:
    """The workspace a home acts in when a command names none: the one `workspace use` remembered in the
    home's `context.json`, else `default`. Read and written without the store."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def current(self) -> str | None:
        """The workspace chosen with `workspace use`, or None."""
        try:
            data = json.loads(self.settings.context_file.read_text())
        except (OSError, ValueError):
            return None
        value = data.get("workspace") if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def resolve(self, name: str | None = None) -> str:
        """The workspace to act on: the one given (its name checked), else the one in use, else `default`."""
        return names.workspace_name(name) if name is not None else self.current() or DEFAULT_WORKSPACE

    def remember(self, name: str | None) -> None:
        """Make `name` the workspace in use (None: none), replacing the file at once (never half-written)."""
        path = self.settings.context_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".context-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump({"workspace": name} if name else {}, handle)
        os.replace(tmp, path)

    def forget(self, name: str) -> None:
        """`name` was deleted: it is no longer the workspace in use."""
        if self.current() == name:
            self.remember(None)


class WorkspaceService:
    def __init__(self, store: Store | Callable[[], Store], settings: Settings | None = None) -> None:
        """Over `store`, or over the one `store()` opens when first needed: `resolve` and the workspace in use
        (`context`) need none, so a client of a remote server reads its choice without making a store."""
        self._store = store
        self.settings = settings or get_settings()
        self.context = WorkspaceContext(self.settings)

    @property
    def store(self) -> Store:
        if not isinstance(self._store, Store):
            self._store = self._store()
        return self._store

    # --- workspaces ---------------------------------------------------------------------------------
    def create(self, name: str, region: str, resource_group: str) -> e.Workspace:
        names.workspace_name(name)
        region = names.region(region, self.settings.regions)
        names.resource_group(resource_group)
        return self._create(name, region, resource_group)

    def _create(self, name: str, region: str, resource_group: str) -> e.Workspace:
        with self.store.write() as session:
            existing = session.scalars(select(r.WorkspaceRow).where(r.WorkspaceRow.name == name)).one_or_none()
            if existing is not None:
                raise AlreadyExists(
                    f"Workspace {name!r} already exists (region {existing.region}, "
                    f"resource group {existing.resource_group}).",
                    "use another name, or use the existing one ({use}).",
                    {"use": step("use_workspace", workspace=name)},
                )
            row = r.WorkspaceRow(
                id=e.new_id("ws"),
                name=name,
                region=region,
                resource_group=resource_group,
                created_at=e.utcnow(),
            )
            session.add(row)
            return r.workspace(row)

    def get(self, name: str) -> e.Workspace:
        with self.store.read() as session:
            return r.workspace(_lookup.workspace_row(session, name))

    def list(self) -> builtins.list[e.Workspace]:
        with self.store.read() as session:
            rows = session.scalars(select(r.WorkspaceRow).order_by(r.WorkspaceRow.name))
            return [r.workspace(row) for row in rows]

    def names_by_id(self) -> dict[str, str]:
        """Workspace id -> name (runs carry the id only)."""
        return {workspace.id: workspace.name for workspace in self.list()}

    def delete(self, name: str, force: bool = False) -> builtins.list[str]:
        """Delete a workspace with everything in it. Returns the ids of its runs (to drop their artifacts).

        Refused while some of its runs have not ended, unless `force`, which cancels them first.
        """
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, name)
            runs = builtins.list(
                session.scalars(select(r.RunRow).where(r.RunRow.workspace_id == ws.id).with_for_update())
            )
            active = [run for run in runs if run.status in e.ACTIVE]
            if active and not force:
                shown = ", ".join(run.id for run in active[:5]) + (", ..." if len(active) > 5 else "")
                raise Conflict(
                    f"Workspace {name!r} has {len(active)} run(s) that have not ended ({shown}).",
                    "wait for them, cancel them ({cancel}), or delete it with force, which cancels them ({force}).",
                    {"cancel": step("cancel_run", run=active[0].id),
                     "force": step("delete_with_force", workspace=name)},
                )
            for run in active:
                _lifecycle.cancel_active(session, run, f"canceled: workspace {name!r} was deleted (with force)")
            session.flush()
            # ON DELETE CASCADE takes its experiments, computes, runs and what the runs recorded.
            session.execute(delete(r.WorkspaceRow).where(r.WorkspaceRow.id == ws.id))
        self.context.forget(name)
        return [run.id for run in runs]

    # --- experiments --------------------------------------------------------------------------------
    def register_or_get_experiment(self, workspace: str, name: str) -> e.Experiment:
        """The experiment `name`: the first call registers it, later ones return the same one."""
        names.experiment_name(name)
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, workspace)
            return r.experiment(_lookup.register_experiment(self.store, session, ws, name))

    def get_experiment(self, workspace: str, name: str) -> e.Experiment:
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            return r.experiment(_lookup.named_row(session, _lookup.EXPERIMENTS, ws, name))

    def list_experiments(self, workspace: str) -> builtins.list[e.Experiment]:
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            rows = session.scalars(
                select(r.ExperimentRow).where(r.ExperimentRow.workspace_id == ws.id).order_by(r.ExperimentRow.name)
            )
            return [r.experiment(row) for row in rows]

    # --- the default workspace ----------------------------------------------------------------------
    def use_workspace(self, name: str) -> e.Workspace:
        """Make `name` the workspace later commands use when none is given."""
        workspace = self.get(name)
        self.context.remember(name)
        return workspace

    def current_workspace(self) -> str | None:
        """The workspace chosen with `use_workspace`, or None (`WorkspaceContext.current`)."""
        return self.context.current()

    def resolve(self, name: str | None = None) -> str:
        """The workspace to act on: the one given, else the one in use, else `default` (reads no store)."""
        return self.context.resolve(name)

    def in_use(self, name: str | None = None, *, here: bool = True) -> tuple[str, e.Compute | None]:
        """The workspace to act in (`resolve`). `default` is made, with its local compute, the first time
        it is used; the compute comes back when this call made it, else None. Not `here` (a client of a
        server acts there, which makes `default` itself): only resolved, and no store is opened."""
        resolved = self.resolve(name)
        if resolved != DEFAULT_WORKSPACE or not here:
            return resolved, None
        try:
            self.get(resolved)
        except NotFound:
            return resolved, self.ensure_default()[1]
        return resolved, None

    def ensure_default(self) -> tuple[e.Workspace, e.Compute]:
        """Workspace `default` with the local compute `local` (size auto, dedicated), made if absent.

        This is what `modelbuilder train DATA` uses when no workspace or compute is named.
        """
        try:
            workspace = self.get(DEFAULT_WORKSPACE)
        except NotFound:
            try:
                workspace = self._create(DEFAULT_WORKSPACE, DEFAULT_REGION, DEFAULT_RESOURCE_GROUP)
            except AlreadyExists:  # another process made it first
                workspace = self.get(DEFAULT_WORKSPACE)
        computes = ComputeService(self.store)
        try:
            compute = computes.get(DEFAULT_WORKSPACE, DEFAULT_COMPUTE)
        except NotFound:
            try:
                compute = computes.create(DEFAULT_WORKSPACE, DEFAULT_COMPUTE, "auto", "dedicated", "local")
            except AlreadyExists:
                compute = computes.get(DEFAULT_WORKSPACE, DEFAULT_COMPUTE)
        deadline = time.monotonic() + 30
        while compute.state == e.CREATING and time.monotonic() < deadline:
            time.sleep(0.05)  # another process is provisioning it right now (it takes a moment)
            compute = computes.get(DEFAULT_WORKSPACE, DEFAULT_COMPUTE)
        return workspace, compute
