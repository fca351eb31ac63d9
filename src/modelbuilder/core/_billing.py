"""Compute time and cost: each attempt of a run is charged once, from its claim to its end.

Private to the store package. Whoever settles an attempt charges it, from what the store knows:

- its worker, when it ends (kill-free): up to that moment;
- the agent that launched it, when it finds the process gone without having charged (kill -9, out
  of memory): up to that moment, one scheduling pass after the exit at most;
- the reaper, when the lease of a lost worker expires (a lost node, a dead agent): up to the lease's
  last renewal, the last moment the worker was known to be alive.

The attempt starts at its claim (the first status change of that attempt). A row per (run, attempt)
in `run_charges` makes the first charge the only one: a worker that wakes up after the reaper charged
its attempt adds nothing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.sizes import SizeCatalog
from modelbuilder.errors import InvalidInput, StaleAttempt

CHARGED_BY = ("worker", "agent", "reaper")


def price_per_hour(catalog: SizeCatalog, row: r.RunRow) -> float:
    if row.sweep is not None:
        return 0.0  # a sweep's parent holds no capacity: its trials are charged, each for its own time
    try:  # a trial holding its share of the compute pays its share
        return catalog.price_per_hour(row.compute_size, row.priority) / e.trial_share(row.trial)
    except InvalidInput:  # a size no longer in the catalog: its time still counts, at no known price
        return 0.0


def claimed_at(session: Session, run_id: str, attempt: int) -> datetime | None:
    """When `attempt` was claimed: the first status change recorded under it."""
    return session.scalar(
        select(r.StatusChangeRow.at)
        .where(r.StatusChangeRow.run_id == run_id, r.StatusChangeRow.attempt == attempt)
        .order_by(r.StatusChangeRow.id)
        .limit(1)
    )


def charge(session: Session, row: r.RunRow, attempt: int, until: datetime, by: str, catalog: SizeCatalog) -> bool:
    """Charge `attempt` of the (locked) run `row` for its time up to `until`, unless it was charged.

    Returns whether this call charged it. Not fenced by the lease: time a worker spent before it lost
    the run was still paid for. The attempt must be one the run really had.
    """
    assert by in CHARGED_BY, by
    if not 1 <= attempt <= row.attempt:
        raise StaleAttempt(f"Run {row.id} has no attempt {attempt}.", "pass the attempt it was claimed as.")
    if session.get(r.ChargeRow, (row.id, attempt)) is not None:
        return False
    started = claimed_at(session, row.id, attempt)
    seconds = max(0.0, (until - started).total_seconds()) if started is not None else 0.0
    cost = seconds / 3600 * price_per_hour(catalog, row)
    session.add(r.ChargeRow(run_id=row.id, attempt=attempt, seconds=seconds, cost=cost, by=by, at=until))
    row.compute_seconds += seconds
    row.cost += cost
    return True
