"""Runs: submission, the status lifecycle, cancel and preemption requests.

A status change that comes from a worker carries its attempt number and is refused with
`StaleAttempt` when that attempt no longer holds the run (fencing; see `_lifecycle.check_holder`).
Changes without an attempt come from the control plane itself (the CLI, the API) and are not fenced.
What a run records (metrics, logs, ...) is `RunRecorder`'s (recording.py); claims and leases are
`LeaseService`'s (leases.py): three services over one store, none built on another.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Collection, Mapping
from typing import Any, Literal

from sqlalchemy import func, select

from modelbuilder import names
from modelbuilder.core import _lifecycle, _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.datasets import link_run
from modelbuilder.core.recording import json_dict
from modelbuilder.core.store import Store
from modelbuilder.errors import AlreadyExists, Conflict, InvalidInput, step

StopRequest = Literal["cancel", "preempt"]
_NEWEST_FIRST = (r.RunRow.created_at.desc(), r.RunRow.id.desc())  # how run lists are ordered


def request_hash(**request: Any) -> str:
    """A stable hash of a submission, to tell a retried request from a different one."""
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class RunService:
    """Runs: submit, read, move through statuses, cancel or preempt."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- submission ---------------------------------------------------------------------------------
    def submit(
        self,
        workspace: str,
        experiment: str,
        compute: str,
        recipe: Mapping[str, Any],
        project_name: str | None = None,
        idempotency_key: str | None = None,
        max_error_retries: int = 2,
        max_preemptions: int | None = None,
        *,
        sweep: Mapping[str, Any] | None = None,
        parent_run_id: str | None = None,
        trial: Mapping[str, Any] | None = None,
        data_asset: tuple[str, int] | None = None,
    ) -> e.Run:
        """Queue a run of `experiment` (registered now if new) on `compute`.

        With an `idempotency_key`, submitting the same request again returns the same run, and a
        different request under the same key is refused. A sweep's parent carries its `sweep` settings;
        a trial names its `parent_run_id` and carries its `trial` (number and sampled settings). A run on a
        data asset names its (asset, version) in `data_asset`: noted in the same transaction as the run, so a
        deletion of that version either sees the run (and is refused) or comes first (and this fails).
        """
        names.experiment_name(experiment)
        names.compute_name(compute)
        if project_name is not None:
            names.project_name(project_name)
        if idempotency_key is not None:
            names.idempotency_key(idempotency_key)
        for value, what in ((max_error_retries, "max_error_retries"), (max_preemptions, "max_preemptions")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InvalidInput(f"{what} must be a whole number >= 0, got {value!r}.", f"pass {what} >= 0.")
        request: dict[str, Any] = {
            "experiment": experiment,
            "compute": compute,
            "recipe": json_dict(recipe, "recipe"),
            "project_name": project_name,
            "max_error_retries": max_error_retries,
            "max_preemptions": max_preemptions,
        }
        for key, given in (("sweep", sweep), ("trial", trial)):
            if given is not None:  # only when given, so that a plain run's hash stays what it was
                request[key] = json_dict(given, key)
        if parent_run_id is not None:
            request["parent_run_id"] = parent_run_id
        if data_asset is not None:
            request["data_asset"] = [names.data_name(data_asset[0]), int(data_asset[1])]
        digest = request_hash(**request)
        try:
            return self._submit(workspace, request, idempotency_key, digest)
        except AlreadyExists:
            if idempotency_key is None:
                raise
            # A concurrent submission with the same key won the insert (PostgreSQL); answer as it would.
            with self.store.read() as session:
                existing = self._idempotent(session, _lookup.workspace_row(session, workspace), idempotency_key, digest)
            if existing is None:
                raise
            return existing

    def _submit(self, workspace: str, request: dict[str, Any], idempotency_key: str | None, digest: str) -> e.Run:
        with self.store.write() as session:
            ws = _lookup.workspace_row(session, workspace)
            if idempotency_key is not None:
                existing = self._idempotent(session, ws, idempotency_key, digest)
                if existing is not None:
                    return existing
            target = _lookup.named_row(session, _lookup.COMPUTES, ws, request["compute"])
            if target.state != e.SUCCEEDED:
                raise self._unusable(target, ws.name)
            exp = _lookup.register_experiment(self.store, session, ws, request["experiment"])
            now = e.utcnow()
            reason = f"submitted to compute {target.name!r} ({target.size}, {target.priority})"
            row = r.RunRow(
                id=e.new_run_id(),
                workspace_id=ws.id,
                experiment_id=exp.id,
                compute_id=target.id,
                compute_name=target.name,
                compute_size=target.size,
                priority=target.priority,
                status=e.QUEUED,
                status_reason=reason,
                recipe=request["recipe"],
                project_name=request["project_name"],
                created_at=now,
                max_error_retries=request["max_error_retries"],
                max_preemptions=request["max_preemptions"],
                idempotency_key=idempotency_key,
                request_hash=digest,
                parent_run_id=request.get("parent_run_id"),
                sweep=request.get("sweep"),
                trial=request.get("trial"),
            )
            session.add(row)
            session.add(r.StatusChangeRow(run_id=row.id, status=e.QUEUED, reason=reason, at=now, attempt=0, details={}))
            session.flush()  # fills the column defaults
            if "data_asset" in request:
                link_run(session, ws, row.id, *request["data_asset"])
            return r.run(row, exp.name)

    @staticmethod
    def _idempotent(session: Any, ws: r.WorkspaceRow, key: str, digest: str) -> e.Run | None:
        row = session.scalars(
            select(r.RunRow).where(r.RunRow.workspace_id == ws.id, r.RunRow.idempotency_key == key)
        ).one_or_none()
        if row is None:
            return None
        if row.request_hash != digest:
            raise Conflict(
                f"Idempotency key {key!r} was already used for a different request (run {row.id}).",
                "use a new idempotency key for a new request, or resend exactly the first request.",
            )
        return _lookup.run_entity(session, row)

    @staticmethod
    def _unusable(compute: r.ComputeRow, workspace: str) -> Conflict:
        if compute.state == e.COMPUTE_FAILED:
            why = (compute.error or "no reason recorded").split(" Fix: ")[0].rstrip(".")
            return Conflict(
                f"Compute {compute.name!r} is in state Failed ({why}); runs need a Succeeded compute.",
                "delete it ({delete}) and create it again with a size that fits, or submit to another compute.",
                {"delete": step("delete_compute", workspace=workspace, compute=compute.name)},
            )
        return Conflict(
            f"Compute {compute.name!r} is in state {compute.state}; runs need a Succeeded compute.",
            "wait until it is Succeeded ({show}), or submit to another compute.",
            {"show": step("show_compute", workspace=workspace, compute=compute.name)},
        )

    # --- reading ------------------------------------------------------------------------------------
    def get(self, run_id: str) -> e.Run:
        with self.store.read() as session:
            return _lookup.run_entity(session, _lookup.run_row(session, run_id))

    def list(
        self,
        workspace: str,
        experiment: str | None = None,
        status: str | None = None,
        compute: str | None = None,
        limit: int = 100,
    ) -> builtins.list[e.Run]:
        """The workspace's runs, newest first, optionally of one experiment, status or compute."""
        if status is not None:
            _known_status(status)
        names.positive_int(limit, "limit", maximum=10_000)
        with self.store.read() as session:
            ws = _lookup.workspace_row(session, workspace)
            query = (
                select(r.RunRow, r.ExperimentRow.name)
                .join(r.ExperimentRow, r.ExperimentRow.id == r.RunRow.experiment_id)
                .where(r.RunRow.workspace_id == ws.id)
            )
            if experiment is not None:
                query = query.where(r.ExperimentRow.name == experiment)
            if status is not None:
                query = query.where(r.RunRow.status == status)
            if compute is not None:
                query = query.where(r.RunRow.compute_name == compute)
            query = query.order_by(*_NEWEST_FIRST).limit(limit)
            return [r.run(row, name) for row, name in session.execute(query)]

    def newest_per_workspace(self, limit: int, statuses: Collection[str] | None = None) -> builtins.list[e.Run]:
        """Every workspace's newest `limit` runs (of `statuses`, when given), newest first, in one query: what
        the portal's home page shows across workspaces, without a query per workspace and status."""
        for status in statuses or ():
            _known_status(status)
        names.positive_int(limit, "limit", maximum=10_000)
        ordinal = func.row_number().over(partition_by=r.RunRow.workspace_id, order_by=_NEWEST_FIRST).label("ordinal")
        ranked = select(r.RunRow.id, ordinal)
        if statuses is not None:
            ranked = ranked.where(r.RunRow.status.in_(sorted(statuses)))
        newest = ranked.subquery()
        query = (
            select(r.RunRow, r.ExperimentRow.name)
            .join(newest, newest.c.id == r.RunRow.id)
            .join(r.ExperimentRow, r.ExperimentRow.id == r.RunRow.experiment_id)
            .where(newest.c.ordinal <= limit)
            .order_by(*_NEWEST_FIRST)
        )
        with self.store.read() as session:
            return [r.run(row, name) for row, name in session.execute(query)]

    def children(self, run_id: str) -> builtins.list[e.Run]:
        """The trials of a sweep, in the order they were started."""
        with self.store.read() as session:
            parent = _lookup.run_row(session, run_id)
            name = session.scalar(select(r.ExperimentRow.name).where(r.ExperimentRow.id == parent.experiment_id))
            rows = session.scalars(select(r.RunRow).where(r.RunRow.parent_run_id == run_id)
                                   .order_by(r.RunRow.created_at, r.RunRow.id))
            return [r.run(row, name or "") for row in rows]

    def history(self, run_id: str) -> builtins.list[e.StatusChange]:
        """Every status change of the run, oldest first."""
        with self.store.read() as session:
            _lookup.run_row(session, run_id)
            rows = session.scalars(
                select(r.StatusChangeRow).where(r.StatusChangeRow.run_id == run_id).order_by(r.StatusChangeRow.id)
            )
            return [r.status_change(row) for row in rows]

    def stop_request(self, run_id: str, attempt: int) -> StopRequest | None:
        """What the worker of `attempt` is asked to do: stop for a cancel, checkpoint for a preemption."""
        with self.store.read() as session:
            row = _lookup.run_row(session, run_id)
            _lifecycle.check_holder(row, attempt)
            return "cancel" if row.cancel_requested else "preempt" if row.preempt_requested else None

    # --- status -------------------------------------------------------------------------------------
    def transition(
        self,
        run_id: str,
        to_status: str,
        reason: str,
        attempt: int | None = None,
        details: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> e.Run:
        """Change the run's status along the allowed transitions, recording when and why.

        A worker passes its `attempt` (fenced); the control plane passes none. Runs enter Preparing
        only through `LeaseService.claim_next_run`, which also gives them a lease.
        """
        if to_status == e.PREPARING:
            raise Conflict(
                f"Run {run_id} can only become Preparing when an agent claims it.",
                "leave it Queued; an agent claims it when its compute has room.",
            )
        stored = json_dict(details or {}, "details")
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if attempt is not None:
                _lifecycle.check_holder(row, attempt)
            _lifecycle.apply(
                session, row, to_status, reason, by_holder=attempt is not None, error=error, details=stored
            )
            return _lookup.run_entity(session, row)

    def request_cancel(self, run_id: str, reason: str = "canceled by the user") -> e.Run:
        """Cancel: a run that waits ends at once; a running one is asked to stop at its next step."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if row.status == e.CANCELED:
                pass
            elif row.status in e.TERMINAL:
                raise Conflict(f"Run {run_id} already ended ({row.status}).", "there is nothing to cancel.")
            elif row.status in (e.QUEUED, e.PREEMPTED):
                _lifecycle.apply(session, row, e.CANCELED, reason)
            else:
                row.cancel_requested = True
            return _lookup.run_entity(session, row)

    def request_early_termination(self, run_id: str, reason: str) -> e.Run:
        """Stop a sweep's trial early: it stops at its next step like a cancel, exports its best model so
        far, and ends Completed with `reason` (see `backends.worker`). A trial that ended is left as it is."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if row.status in e.TERMINAL:
                return _lookup.run_entity(session, row)
            row.termination_reason = reason[: _lifecycle.MAX_REASON]
            if row.status in (e.QUEUED, e.PREEMPTED):
                _lifecycle.apply(session, row, e.CANCELED, reason)  # nothing trained: nothing to complete
            else:
                row.cancel_requested = True
            return _lookup.run_entity(session, row)

    def request_preempt(self, run_id: str, reason: str) -> e.Run:
        """Ask the worker of a held run to checkpoint and give the run back to the queue."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if row.status not in e.HELD:
                raise Conflict(
                    f"Run {run_id} is {row.status}; only a Preparing, Running or Finalizing run can be preempted.",
                    "preempt runs while they run.",
                )
            row.preempt_requested = True
            row.preempt_reason = reason[: _lifecycle.MAX_REASON]
            return _lookup.run_entity(session, row)


def _known_status(status: str) -> None:
    if status not in e.RUN_STATUSES:
        raise InvalidInput(f"Status {status!r} does not exist.", f"use one of: {', '.join(e.RUN_STATUSES)}.")
