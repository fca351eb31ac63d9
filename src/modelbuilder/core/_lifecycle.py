"""The run state machine applied to a row: transitions, fencing and the status history.

Private to the store package: `RunService`, `LeaseService` and the compute/workspace deletions all
change statuses through `apply()`, so every change is checked against the table in `entities` and
leaves a `StatusChange` with its time and reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.errors import Conflict, StaleAttempt

MAX_REASON = 2000


def check_holder(row: r.RunRow, attempt: int) -> None:
    """Fencing: only the attempt that holds the run's lease may write to it.

    An attempt loses the run when a newer claim bumped the attempt number, or when its lease was taken
    away (requeued by the reaper, canceled by a forced delete, or released).
    """
    if attempt != row.attempt or row.lease_owner is None:
        raise StaleAttempt(
            f"Attempt {attempt} of run {row.id} no longer holds it "
            f"(current attempt {row.attempt}, status {row.status}).",
            "stop this worker; the run continues (or ended) under its current attempt.",
        )


def apply(
    session: Session,
    row: r.RunRow,
    to_status: str,
    reason: str,
    *,
    by_holder: bool = False,
    error: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    """Move `row` to `to_status` (checked against the transition table) and record why.

    `by_holder`: the change comes from the worker holding the lease, which keeps the lease until it
    releases it (so it can still flush its last logs). Any other change to an end state, and every
    return to the queue, takes the lease away, which fences that worker's later writes.
    """
    if to_status not in e.RUN_STATUSES:
        raise Conflict(f"Status {to_status!r} does not exist.", f"use one of: {', '.join(e.RUN_STATUSES)}.")
    if not e.can_transition(row.status, to_status):
        allowed = ", ".join(sorted(e.TRANSITIONS[row.status])) or "none, it has ended"
        raise Conflict(
            f"Run {row.id} cannot go from {row.status} to {to_status}.",
            f"from {row.status} a run can go to: {allowed}.",
        )
    now = now or e.utcnow()
    reason = (reason or to_status)[:MAX_REASON]
    row.status = to_status
    row.status_reason = reason
    if to_status == e.RUNNING and row.started_at is None:
        row.started_at = now
    if to_status in e.TERMINAL:
        row.ended_at = now
    if to_status == e.FAILED:
        row.error = (error or reason)[:MAX_REASON]
    elif error is not None:
        row.error = error[:MAX_REASON]
    if to_status == e.PREEMPTED:
        row.preemptions += 1
    if to_status == e.QUEUED:
        row.preempt_requested = False
        row.preempt_reason = None
    if to_status == e.QUEUED or (to_status in e.TERMINAL and not by_holder):
        row.lease_owner = None
        row.lease_expires_at = None
    session.add(
        r.StatusChangeRow(
            run_id=row.id, status=to_status, reason=reason, at=now, attempt=row.attempt, details=details or {}
        )
    )


def cancel_active(session: Session, row: r.RunRow, reason: str) -> None:
    """Cancel a run that has not ended, whoever holds it (its worker is fenced off and stops)."""
    if row.status not in e.TERMINAL:
        apply(session, row, e.CANCELED, reason)
