"""Eight processes at once on one brand-new store: create it, submit, claim, record, finish.

On SQLite this is the "database is locked" test: WAL, the busy timeout and BEGIN IMMEDIATE must
make every writer wait its turn instead of failing. On PostgreSQL it exercises the advisory lock
around the first migration and SKIP LOCKED claims between processes.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any

import sqlalchemy as sa

from modelbuilder.core import _rows as r
from modelbuilder.core.compute import ComputeService
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.core.workspace import WorkspaceService

PROCESSES = 8
RUNS_EACH = 5
EPOCHS = 3


def _worker(url: str, index: int, start: Any, errors: Any) -> None:
    try:
        start.wait(60)
        with Store.open(url) as store:  # all eight open the brand-new store at once
            WorkspaceService(store).ensure_default()
            runs, recorder, leases = RunService(store), RunRecorder(store), LeaseService(store)
            compute = ComputeService(store).get("default", "local")
            for i in range(RUNS_EACH):
                runs.submit("default", f"exp-{index % 3}", "local", {"worker": index, "i": i})
            while (run := leases.claim_next_run([compute.id], f"worker-{index}", 60)) is not None:
                attempt = run.attempt
                runs.transition(run.id, "Running", "training", attempt=attempt)
                for epoch in range(1, EPOCHS + 1):
                    recorder.log_metrics(run.id, attempt, epoch, {"loss": 1 / epoch, "accuracy": epoch / 4})
                    recorder.append_logs(run.id, attempt, [f"epoch {epoch} done", ("debug", "tick")])
                    recorder.update_progress(run.id, attempt, {"epoch": epoch})
                    leases.renew_lease(run.id, attempt, f"worker-{index}", 60)
                runs.transition(run.id, "Finalizing", "exporting", attempt=attempt)
                runs.transition(run.id, "Completed", "done", attempt=attempt)
                recorder.charge_attempt(run.id, attempt)
                leases.release_lease(run.id, attempt, f"worker-{index}")
    except BaseException:
        errors.put(f"worker {index}: {traceback.format_exc()}")
        raise


def test_eight_processes_write_to_one_store_at_once(store_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, errors = ctx.Barrier(PROCESSES), ctx.Queue()
    processes = [ctx.Process(target=_worker, args=(store_url, i, start, errors)) for i in range(PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(180)
    reported = []
    while not errors.empty():
        reported.append(errors.get())
    assert reported == []
    assert [p.exitcode for p in processes] == [0] * PROCESSES

    with Store.open(store_url) as store:
        every = RunService(store).list("default", limit=1000)
        assert len(every) == PROCESSES * RUNS_EACH
        assert {run.status for run in every} == {"Completed"}
        assert {run.attempt for run in every} == {1}  # no run was claimed twice
        charges = {run.id: RunRecorder(store).charges(run.id) for run in every}
        assert {tuple((c.attempt, c.by) for c in charged) for charged in charges.values()} == {((1, "worker"),)}
        assert all(run.compute_seconds == charges[run.id][0].seconds > 0 for run in every)
        assert len(WorkspaceService(store).list_experiments("default")) == 3
        with store.read() as session:
            metrics = session.scalar(sa.select(sa.func.count()).select_from(r.MetricRow))
            logs = session.scalar(sa.select(sa.func.count()).select_from(r.LogRow))
            changes = session.scalar(sa.select(sa.func.count()).select_from(r.StatusChangeRow))
        assert metrics == PROCESSES * RUNS_EACH * EPOCHS * 2
        assert logs == PROCESSES * RUNS_EACH * EPOCHS * 2
        assert changes == PROCESSES * RUNS_EACH * 5
        assert [line.seq for line in RunRecorder(store).logs(every[0].id)] == list(range(1, 2 * EPOCHS + 1))
