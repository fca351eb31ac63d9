"""Leases: how workers claim queued runs, keep them, give them back, and how lost ones are reaped.

These are the primitives the scheduler (`scheduler.py`) builds its agents on:

- `claim_next_run` takes the next queued run of some computes, atomically: dedicated computes before
  low-priority ones, then oldest first. SQLite serializes claims with `BEGIN IMMEDIATE`; PostgreSQL
  uses `SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent agents never wait on each other's rows.
  Each claim bumps the run's attempt number, which fences every later write of older attempts.
- `renew_lease` is the worker's heartbeat (`LeaseRenewal` calls it every HEARTBEAT_S from a thread of
  the holder's); `release_lease` ends the lease once the run has ended.
- `requeue_expired` is the reaper: a run whose worker stopped renewing goes back to the queue,
  counting against its error budget, or fails once that budget is spent.
- `worker_exited` is the agent's view of a worker process it saw exit: it settles the run if the
  worker did not, and charges the attempt if the worker could not (kill -9, out of memory).
- `fail_or_retry` and `preempted` give a run back after an error or a preemption, each with its own
  budget (errors: `max_error_retries`, default 2; preemptions: `max_preemptions`, default unlimited).

A worker keeps its lease through an end it reports itself (Completed, Canceled, Failed), so it can
still flush its last log lines; it then calls `release_lease`. A return to the queue, or an end
decided by someone else, takes the lease away at once and fences the worker off.

Lease times come from the clock of the process that writes them; hosts sharing a PostgreSQL store
are expected to keep their clocks in sync (NTP), as lease times are minutes and skew is seconds.
The reaper and the agent charge the attempts they settle (`_billing`), each attempt once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, case, select, update
from sqlalchemy.orm import Session

from modelbuilder.core import _billing, _lifecycle, _lookup
from modelbuilder.core import _rows as r
from modelbuilder.core import entities as e
from modelbuilder.core.sizes import SizeCatalog, default_catalog
from modelbuilder.core.store import Store
from modelbuilder.errors import InvalidInput, ModelBuilderError, StaleAttempt

MAX_OWNER = 200
LEASE_S = 60.0  # how long a claim or a renewal keeps a run held: the time a lost holder keeps it from the reaper
HEARTBEAT_S = 5.0  # how often a holder renews: a dozen chances to renew before its lease runs out


def _lease_seconds(seconds: float) -> timedelta:
    if not isinstance(seconds, int | float) or not 0 < seconds <= 86_400:
        raise InvalidInput(f"A lease of {seconds!r} seconds is not valid.", "use 0 < seconds <= 86400.")
    return timedelta(seconds=seconds)


def _owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner or len(owner) > MAX_OWNER:
        raise InvalidInput(f"Lease owner {str(owner)[:40]!r} is not valid.", "use 1 to 200 characters.")
    return owner


def resume_point(row: r.RunRow) -> str:
    """'resumes after epoch 2 (...)' for an end-of-epoch checkpoint, 'resumes at epoch 3, step 5 (...)'
    for one written mid-epoch (a preemption)."""
    if row.resume_step:
        return f"resumes at epoch {(row.resume_epoch or 0) + 1}, step {row.resume_step} ({row.resume_from})"
    return f"resumes after epoch {row.resume_epoch} ({row.resume_from})"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


class LeaseService:
    def __init__(self, store: Store, catalog: SizeCatalog | None = None) -> None:
        self.store = store
        self.catalog = catalog or default_catalog()

    def claim_next_run(
        self, compute_ids: Sequence[str], owner: str, lease_seconds: float, now: datetime | None = None
    ) -> e.Run | None:
        """Claim the next queued run on one of `compute_ids` for `owner`; None when none waits."""
        _owner(owner)
        lease = _lease_seconds(lease_seconds)
        if not compute_ids:
            return None
        now = now or e.utcnow()
        query = (
            select(r.RunRow)
            .where(r.RunRow.status == e.QUEUED, r.RunRow.compute_id.in_(list(compute_ids)))
            .order_by(case((r.RunRow.priority == "dedicated", 0), else_=1), r.RunRow.created_at, r.RunRow.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        with self.store.write() as session:
            row = session.scalars(query).one_or_none()
            if row is None:
                return None
            row.attempt += 1
            row.lease_owner = owner
            row.lease_expires_at = now + lease
            row.lease_renewed_at = now
            row.cancel_requested = False
            reason = f"claimed by {owner} (attempt {row.attempt})"
            details: dict[str, object] = {"owner": owner}
            if row.resume_from:
                reason += f"; {resume_point(row)}"
                details.update(resume_from=row.resume_from, resume_epoch=row.resume_epoch, resume_step=row.resume_step)
            _lifecycle.apply(session, row, e.PREPARING, reason, by_holder=True, details=details, now=now)
            return _lookup.run_entity(session, row)

    def renew_lease(
        self, run_id: str, attempt: int, owner: str, lease_seconds: float, now: datetime | None = None
    ) -> e.Run:
        """Extend the lease of `attempt` (the heartbeat). The returned run says if a stop was requested."""
        lease = _lease_seconds(lease_seconds)
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            if row.lease_owner != owner:
                raise StaleAttempt(f"Run {run_id} is held by {row.lease_owner}, not {owner}.", "stop this worker.")
            row.lease_renewed_at = now or e.utcnow()
            row.lease_expires_at = row.lease_renewed_at + lease
            return _lookup.run_entity(session, row)

    def release_lease(self, run_id: str, attempt: int, owner: str) -> e.Run:
        """End the lease of `attempt` once its worker is done. Harmless when it was already taken away.

        A worker that lets go of a run it has not finished hands it to `fail_or_retry`, so no run is
        ever left held by nobody.
        """
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            if row.attempt != attempt or row.lease_owner != owner:
                return _lookup.run_entity(session, row)
            if row.status in e.HELD:
                self._fail_or_retry(session, row, f"worker {owner} released the run before it ended")
            row.lease_owner = None
            row.lease_expires_at = None
            return _lookup.run_entity(session, row)

    def expired_leases(self, now: datetime | None = None) -> list[e.Run]:
        """Held runs whose lease ran out before `now` (their worker stopped renewing)."""
        with self.store.read() as session:
            return [_lookup.run_entity(session, row) for row in session.scalars(self._expired(now or e.utcnow()))]

    def requeue_expired(self, now: datetime | None = None) -> list[e.Run]:
        """The reaper: put runs whose worker was lost back in the queue (or end them). Returns them."""
        now = now or e.utcnow()
        with self.store.write() as session:
            rows = list(session.scalars(self._expired(now).with_for_update(skip_locked=True)))
            for row in rows:
                assert row.lease_expires_at is not None
                # The worker was last known alive at its last renewal: its attempt is charged to then.
                last_seen = row.lease_renewed_at or row.lease_expires_at
                _billing.charge(session, row, row.attempt, min(last_seen, now), "reaper", self.catalog)
                lost = f"worker lost (lease expired at {_stamp(row.lease_expires_at)})"
                if row.cancel_requested:
                    _lifecycle.apply(session, row, e.CANCELED, f"canceled; {lost}", now=now)
                elif row.preempt_requested:
                    self._preempted(session, row, f"{row.preempt_reason or 'preempted'}; {lost}", now)
                else:
                    self._fail_or_retry(session, row, lost, now)
            # Workers that ended their run but died before releasing: their leases just lapse.
            session.execute(
                update(r.RunRow)
                .where(r.RunRow.status.in_(e.TERMINAL), r.RunRow.lease_expires_at < now)
                .values(lease_owner=None, lease_expires_at=None)
            )
            return [_lookup.run_entity(session, row) for row in rows]

    def worker_exited(self, run_id: str, attempt: int, owner: str, error: str, now: datetime | None = None) -> e.Run:
        """The agent `owner` saw the worker process of `attempt` exit. Charge the attempt up to `now`
        if its worker did not (killed before it could), and retry or fail the run if the worker left it
        held (it died before reporting an end) instead of waiting for its lease to expire."""
        now = now or e.utcnow()
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _billing.charge(session, row, attempt, now, "agent", self.catalog)
            if row.attempt == attempt and row.status in e.HELD and row.lease_owner == owner:
                self._fail_or_retry(session, row, error, now)
            return _lookup.run_entity(session, row)

    def fail_or_retry(self, run_id: str, attempt: int, error: str) -> e.Run:
        """The worker of `attempt` hit `error`: requeue the run if it has error retries left, else fail it."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            self._fail_or_retry(session, row, error, by_holder=True)
            return _lookup.run_entity(session, row)

    def preempted(self, run_id: str, attempt: int, reason: str) -> e.Run:
        """The worker of `attempt` stopped for a preemption: Preempted, then back to Queued to resume."""
        with self.store.write() as session:
            row = _lookup.run_row(session, run_id, for_update=True)
            _lifecycle.check_holder(row, attempt)
            self._preempted(session, row, reason, by_holder=True)
            return _lookup.run_entity(session, row)

    # --- internals ----------------------------------------------------------------------------------
    @staticmethod
    def _expired(now: datetime) -> Select[r.RunRow]:
        return (
            select(r.RunRow)
            .where(r.RunRow.status.in_(e.HELD), r.RunRow.lease_expires_at < now)
            .order_by(r.RunRow.lease_expires_at)
        )

    @staticmethod
    def _fail_or_retry(
        session: Session, row: r.RunRow, error: str, now: datetime | None = None, by_holder: bool = False
    ) -> None:
        if row.error_retries < row.max_error_retries:
            row.error_retries += 1
            reason = f"{error}; retry {row.error_retries} of {row.max_error_retries}"
            _lifecycle.apply(session, row, e.QUEUED, reason, error=error, now=now)
        else:
            spent = f"{error}; no error retries left ({row.max_error_retries} used)"
            _lifecycle.apply(session, row, e.FAILED, spent, by_holder=by_holder, error=error, now=now)

    @staticmethod
    def _preempted(
        session: Session, row: r.RunRow, reason: str, now: datetime | None = None, by_holder: bool = False
    ) -> None:
        _lifecycle.apply(session, row, e.PREEMPTED, reason, by_holder=True, now=now)
        if row.max_preemptions is not None and row.preemptions > row.max_preemptions:
            why = f"preempted {row.preemptions} times; the budget allows {row.max_preemptions}"
            _lifecycle.apply(session, row, e.FAILED, why, by_holder=by_holder, now=now)
        elif row.resume_from:
            resume = f"requeued after preemption; {resume_point(row)}"
            _lifecycle.apply(session, row, e.QUEUED, resume, now=now)
        else:
            _lifecycle.apply(
                session, row, e.QUEUED, "requeued after preemption; starts over (no checkpoint yet)", now=now
            )


class LeaseRenewal:
    """The heartbeat of one attempt's holder: renews its lease every `interval` seconds in a thread.

    After each renewal `on_renewed(run)` is called with the run as the store has it (a cancel or a
    preemption asked for since shows there). Once the attempt no longer holds the run (`StaleAttempt`),
    `on_lost()` is called and the renewals stop. A store that is briefly unavailable is tried again at
    the next beat, which is what a lease of LEASE_S = 12 x HEARTBEAT_S leaves room for.
    """

    def __init__(self, leases: LeaseService, run_id: str, attempt: int, owner: str, *,
                 on_renewed: Callable[[e.Run], None], on_lost: Callable[[], None],
                 interval: float = HEARTBEAT_S, lease_seconds: float = LEASE_S) -> None:
        self.leases, self.run_id, self.attempt, self.owner = leases, run_id, attempt, owner
        self.on_renewed, self.on_lost = on_renewed, on_lost
        self.interval, self.lease_seconds = interval, lease_seconds
        self.lost = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {run_id}", daemon=True)

    def start(self) -> LeaseRenewal:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def renew_now(self) -> bool:
        """Renew at once (also between beats); False once the lease is lost."""
        if self.lost:
            return False
        try:
            run = self.leases.renew_lease(self.run_id, self.attempt, self.owner, self.lease_seconds)
            self.on_renewed(run)
        except StaleAttempt:
            self.lost = True
            self.on_lost()
            return False
        except ModelBuilderError:
            pass  # the store is unavailable for a moment: the next beat tries again
        return True

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval) and self.renew_now():
            pass
