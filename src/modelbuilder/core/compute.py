"""Computes: where runs train. Validation, the provisioning state machine and the provisioner registry.

Creating a compute records it as `Creating`, asks the provisioner of its kind whether the size can
really be met, and ends `Succeeded` or `Failed` with the reason. A failed compute stays, with its
error, until it is deleted: its name cannot be reused before that (the reference system's rule).

Provisioners are plain functions registered per kind. The local one compares the size with this
host; the Ray backend registers its own (`register_provisioner("ray", fn)`) when it is imported, which
happens on the first ray compute at the latest. A kind with no provisioner fails its computes with a
clear reason instead of raising.
"""

from __future__ import annotations

import builtins
import importlib
import re
from collections.abc import Callable

from sqlalchemy import select

from modelbuilder import names
from modelbuilder.core import _lifecycle, _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.sizes import SizeCatalog, SizeSpec, default_catalog, host_capacity, shortfalls
from modelbuilder.core.store import Store
from modelbuilder.errors import AlreadyExists, CapacityError, Conflict, InvalidInput, ModelBuilderError, Step, step

# A provisioner checks that `size` can be met for `compute` and raises a ModelBuilderError (usually
# CapacityError) saying why not. It runs outside any store transaction, so it may take a while.
Provisioner = Callable[[e.Compute, SizeSpec], None]
_PROVISIONERS: dict[str, Provisioner] = {}
_IMPORTED: set[str] = set()
_ADDRESS = re.compile(r"[A-Za-z0-9_.:/@\[\]%+-]{1,512}")


def register_provisioner(kind: str, provisioner: Provisioner) -> None:
    """Make `provisioner` the check for computes of `kind` (replacing any earlier one)."""
    _PROVISIONERS[names.compute_kind(kind)] = provisioner


def provision_local(compute: e.Compute, size: SizeSpec) -> None:
    """A local compute fits when this host has the size's GPUs, vCPUs and memory."""
    missing = shortfalls(size, host_capacity())
    if missing:
        raise CapacityError(
            f"Size {size.name} needs {', '.join(missing)}.",
            "pick a smaller size ({sizes}), or 'auto' for what this host has.", {"sizes": step("compute_sizes")},
        )


register_provisioner("local", provision_local)


def _provisioner(kind: str) -> Provisioner | None:
    """The provisioner of `kind`. A backend registers its own when its module is imported, so that
    module (`modelbuilder.backends.<kind>`) is imported once first if nothing registered one yet."""
    if kind not in _PROVISIONERS and kind not in _IMPORTED:
        _IMPORTED.add(kind)
        try:
            importlib.import_module(f"modelbuilder.backends.{kind}")
        except ImportError:
            pass
    return _PROVISIONERS.get(kind)


def _provision(compute: e.Compute, size: SizeSpec) -> str | None:
    """The error text of a failed provisioning, or None when it succeeded."""
    provisioner = _provisioner(compute.kind)
    if provisioner is None:
        return (
            f"No provisioner is available for {compute.kind!r} computes in this installation "
            f"(install the extra: pip install 'modelbuilder[{compute.kind}]')."
        )
    try:
        provisioner(compute, size)
    except ModelBuilderError as error:
        return str(error)
    except Exception as error:  # a backend's own failure (network, client library) fails the compute
        return f"{compute.kind} provisioning failed: {type(error).__name__}: {error}"
    return None


def _both_fixes(workspace: str, name: str) -> tuple[str, dict[str, Step]]:
    return ("use another name, or delete the existing compute first ({delete}).",
            {"delete": step("delete_compute", workspace=workspace, compute=name)})


class ComputeService:
    def __init__(self, store: Store, catalog: SizeCatalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or default_catalog()

    # --- create -------------------------------------------------------------------------------------
    def create(
        self,
        workspace: str,
        name: str,
        size: str,
        priority: str = "dedicated",
        kind: str = "local",
        address: str | None = None,
    ) -> e.Compute:
        """Create and provision a compute. Returns it `Succeeded`, or `Failed` with `error` saying why."""
        names.compute_name(name)
        names.priority(priority)
        names.compute_kind(kind)
        size = self.catalog.canonical(size)
        if address is not None:
            if kind == "local":
                raise InvalidInput("A local compute takes no address.",
                                   "give no address, or make it a compute of kind ray.")
            if not _ADDRESS.fullmatch(address):
                raise InvalidInput(
                    f"Address {address[:60]!r} is not valid.",
                    "give the Ray cluster's address, for example 'ray://head:10001' or 'auto'.",
                )
        now = e.utcnow()
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, workspace)
            existing = session.scalars(
                select(r.ComputeRow).where(r.ComputeRow.workspace_id == ws.id, r.ComputeRow.name == name)
            ).one_or_none()
            if existing is not None:
                raise self._exists(existing, workspace)
            row = r.ComputeRow(
                id=e.new_id("cmp"),
                workspace_id=ws.id,
                name=name,
                size=size,
                priority=priority,
                kind=kind,
                address=address,
                state=e.CREATING,
                error=None,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            created = r.compute(row)
        error = _provision(created, self.catalog.get(size))
        with self.store.write() as session:
            row = session.get_one(r.ComputeRow, created.id)
            row.state = e.SUCCEEDED if error is None else e.COMPUTE_FAILED
            row.error = error
            row.updated_at = e.utcnow()
            return r.compute(row)

    @staticmethod
    def _exists(row: r.ComputeRow, workspace: str) -> AlreadyExists:
        if row.state == e.COMPUTE_FAILED:
            why = (row.error or "no reason recorded").split(" Fix: ")[0].rstrip(".")
            return AlreadyExists(
                f"Compute {row.name!r} already exists in workspace {workspace!r}, in state Failed ({why}).",
                *_both_fixes(workspace, row.name),
            )
        return AlreadyExists(
            f"Compute {row.name!r} already exists in workspace {workspace!r} "
            f"(state {row.state}, size {row.size}, {row.priority}).",
            *_both_fixes(workspace, row.name),
        )

    # --- read ---------------------------------------------------------------------------------------
    def get(self, workspace: str, name: str) -> e.Compute:
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            return r.compute(_lookup.named_row(session, _lookup.COMPUTES, ws, name))

    def list(self, workspace: str) -> list[e.Compute]:
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            rows = session.scalars(
                select(r.ComputeRow).where(r.ComputeRow.workspace_id == ws.id).order_by(r.ComputeRow.name)
            )
            return [r.compute(row) for row in rows]

    def list_all(self) -> builtins.list[tuple[str, e.Compute]]:
        """Every compute of every workspace, with its workspace's name, by workspace and name (the portal's
        home page), in one query."""
        with self.store.read() as session:
            rows = session.execute(select(r.ComputeRow, r.WorkspaceRow.name)
                                   .join(r.WorkspaceRow, r.WorkspaceRow.id == r.ComputeRow.workspace_id)
                                   .order_by(r.WorkspaceRow.name, r.ComputeRow.name))
            return [(workspace, r.compute(row)) for row, workspace in rows]

    def sizes(self) -> builtins.list[SizeSpec]:
        """The size catalog, `auto` (this host) last: for `modelbuilder compute sizes`."""
        return self.catalog.sizes()

    def price_per_hour(self, size: str, priority: str) -> float:
        return self.catalog.price_per_hour(size, names.priority(priority))

    # --- delete -------------------------------------------------------------------------------------
    def delete(self, workspace: str, name: str, force: bool = False) -> builtins.list[str]:
        """Delete a compute in any state. Returns the ids of the runs that `force` canceled.

        A compute with runs that have not ended is kept unless `force`, which cancels those runs
        (their workers are fenced off and stop at their next write or heartbeat). The `Deleting` state
        is for backends that must tear resources down; local computes and existing Ray clusters have
        nothing to tear down, so deletion is one transaction.
        """
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, workspace)
            row = _lookup.named_row(session, _lookup.COMPUTES, ws, name)
            active = list(
                session.scalars(
                    select(r.RunRow)
                    .where(r.RunRow.compute_id == row.id, r.RunRow.status.in_(e.ACTIVE))
                    .order_by(r.RunRow.created_at)
                    .with_for_update()
                )
            )
            if active and not force:
                shown = ", ".join(run.id for run in active[:5]) + (", ..." if len(active) > 5 else "")
                raise Conflict(
                    f"Compute {name!r} has {len(active)} run(s) that have not ended ({shown}).",
                    "wait for them, cancel them ({cancel}), or delete it with force, which cancels them ({force}).",
                    {"cancel": step("cancel_run", run=active[0].id),
                     "force": step("delete_with_force", workspace=workspace, compute=name)},
                )
            for run in active:
                _lifecycle.cancel_active(session, run, f"canceled: compute {name!r} was deleted (with force)")
            session.delete(row)
            return [run.id for run in active]
