from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from modelbuilder.core.entities import Run, utcnow
from modelbuilder.core.leases import LeaseRenewal, LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from modelbuilder.core.store import Store
from modelbuilder.errors import InvalidInput, StaleAttempt

if TYPE_CHECKING:
    from tests.core.conftest import Team

Recipe = dict[str, object]
LATER = timedelta(minutes=5)


def _computes(team: Team) -> list[str]:
    return [team.dedicated_id, team.spot_id]


def _claim(leases: LeaseService, team: Team, owner: str = "agent-a") -> Run:
    run = leases.claim_next_run(_computes(team), owner, lease_seconds=60)
    assert run is not None
    return run


def test_claims_take_dedicated_before_low_priority_then_oldest_first(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    spot_1 = runs.submit(team.workspace, "pets", team.spot, recipe)
    dedicated_1 = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    spot_2 = runs.submit(team.workspace, "pets", team.spot, recipe)
    dedicated_2 = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    assert leases.claim_next_run([team.spot_id], "agent-spot", 60).id == spot_1.id  # type: ignore[union-attr]
    order = [_claim(leases, team).id for _ in range(3)]
    assert order == [dedicated_1.id, dedicated_2.id, spot_2.id]
    assert leases.claim_next_run(_computes(team), "agent-a", 60) is None
    assert leases.claim_next_run([], "agent-a", 60) is None


def test_a_claim_takes_a_lease_and_bumps_the_attempt(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    submitted = runs.submit(team.workspace, "pets", team.dedicated, recipe)
    before = utcnow()
    run = _claim(leases, team, owner="host-1:pid-42")
    assert (run.id, run.status, run.attempt, run.lease_owner) == (
        submitted.id,
        "Preparing",
        1,
        "host-1:pid-42",
    )
    assert run.lease_expires_at is not None
    assert before + timedelta(seconds=59) < run.lease_expires_at < utcnow() + timedelta(seconds=61)
    assert run.status_reason == "claimed by host-1:pid-42 (attempt 1)"
    with pytest.raises(InvalidInput):
        leases.claim_next_run(_computes(team), "", 60)
    with pytest.raises(InvalidInput):
        leases.claim_next_run(_computes(team), "agent", 0)


def test_claims_are_exclusive_across_agents(store_url: str, runs: RunService, team: Team, recipe: Recipe) -> None:
    submitted = {runs.submit(team.workspace, "pets", team.spot, recipe).id for _ in range(24)}
    claimed: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def agent(index: int) -> None:
        try:
            with Store.open(store_url) as own_store:  # each agent its own engine, as separate processes have
                service = LeaseService(own_store)
                start.wait()
                while (run := service.claim_next_run(_computes(team), f"agent-{index}", 60)) is not None:
                    claimed.append(run.id)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(claimed) == sorted(submitted)  # each run once, none twice
    assert {run.attempt for run in runs.list(team.workspace)} == {1}


def test_renewing_extends_the_lease_and_reports_stop_requests(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = _claim(leases, team)
    renewed = leases.renew_lease(run.id, 1, "agent-a", 600)
    assert renewed.lease_expires_at > run.lease_expires_at  # type: ignore[operator]
    runs.request_cancel(run.id)
    assert leases.renew_lease(run.id, 1, "agent-a", 600).cancel_requested
    with pytest.raises(StaleAttempt):
        leases.renew_lease(run.id, 1, "agent-b", 600)
    with pytest.raises(StaleAttempt):
        leases.renew_lease(run.id, 2, "agent-a", 600)


def test_the_renewal_loop_renews_reports_each_renewal_and_stops_once_the_lease_is_lost(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = _claim(leases, team)
    seen: queue.Queue[Any] = queue.Queue()
    lost = threading.Event()
    renewal = LeaseRenewal(leases, run.id, 1, "agent-a", on_renewed=seen.put, on_lost=lost.set, interval=0.01,
                           lease_seconds=600).start()
    try:
        first = seen.get(timeout=30)  # renewed by the loop's own thread
        assert first.lease_expires_at > run.lease_expires_at
        runs.request_cancel(run.id)
        assert _next_matching(seen, lambda r: r.cancel_requested)  # a stop request shows in a renewal
        leases.requeue_expired(utcnow() + timedelta(hours=1))  # taken away: the reaper requeues it
        assert lost.wait(30)
        renewal._thread.join(30)
        assert not renewal._thread.is_alive()  # no renewals after the loss
        assert renewal.lost
        assert renewal.renew_now() is False
    finally:
        renewal.stop()


def _next_matching(seen: queue.Queue[Any], matches: Callable[[Any], bool]) -> Any:
    while True:
        run = seen.get(timeout=30)
        if matches(run):
            return run


def test_the_reaper_requeues_lost_runs_against_the_error_budget(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    submitted = runs.submit(team.workspace, "pets", team.dedicated, recipe)  # 2 error retries by default
    for attempt in (1, 2, 3):
        run = _claim(leases, team)
        assert run.attempt == attempt
        runs.transition(run.id, "Running", "training", attempt=attempt)
        assert leases.expired_leases() == []
        assert leases.requeue_expired() == []
        assert [r.id for r in leases.expired_leases(utcnow() + LATER)] == [run.id]
        [reaped] = leases.requeue_expired(utcnow() + LATER)
        assert reaped.lease_owner is None
        if attempt < 3:
            assert reaped.status == "Queued"
            assert reaped.error_retries == attempt
            assert "worker lost (lease expired at" in reaped.status_reason
            assert f"retry {attempt} of 2" in reaped.status_reason
    assert reaped.status == "Failed"
    assert "no error retries left (2 used)" in reaped.status_reason
    assert reaped.error is not None
    assert "worker lost" in reaped.error
    statuses = [h.status for h in runs.history(submitted.id)]
    assert statuses == ["Queued"] + ["Preparing", "Running", "Queued"] * 2 + [
        "Preparing",
        "Running",
        "Failed",
    ]


def test_no_error_budget_fails_at_once(runs: RunService, leases: LeaseService, team: Team, recipe: Recipe) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe, max_error_retries=0)
    run = _claim(leases, team)
    [reaped] = leases.requeue_expired(utcnow() + LATER)
    assert reaped.status == "Failed"
    assert reaped.id == run.id


def test_a_lost_run_that_was_being_canceled_ends_canceled(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = _claim(leases, team)
    runs.request_cancel(run.id)
    [reaped] = leases.requeue_expired(utcnow() + LATER)
    assert reaped.status == "Canceled"
    assert reaped.error_retries == 0


def test_errors_retry_then_fail_with_the_last_error(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe, max_error_retries=1)
    run = _claim(leases, team)
    retried = leases.fail_or_retry(run.id, 1, "CUDA error: out of memory")
    assert retried.status == "Queued"
    assert retried.status_reason == "CUDA error: out of memory; retry 1 of 1"
    with pytest.raises(StaleAttempt):
        leases.fail_or_retry(run.id, 1, "again")
    run = _claim(leases, team)
    failed = leases.fail_or_retry(run.id, 2, "ValueError: bad image")
    assert failed.status == "Failed"
    assert failed.error == "ValueError: bad image"
    assert failed.ended_at is not None
    recorder.append_logs(run.id, 2, ["Traceback ..."])  # its own end: the worker may still flush its logs
    assert leases.release_lease(run.id, 2, "agent-a").lease_owner is None


def test_preemption_requeues_to_resume_with_its_own_budget(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    submitted = runs.submit(team.workspace, "pets", team.spot, recipe, max_preemptions=1, max_error_retries=0)
    run = _claim(leases, team)
    runs.transition(run.id, "Running", "training", attempt=1)
    recorder.set_resume_point(run.id, 1, "checkpoints/epoch-2.pt", 2, 40)
    runs.request_preempt(run.id, "a dedicated run needs the GPU")
    requeued = leases.preempted(run.id, 1, "a dedicated run needs the GPU")
    assert requeued.status == "Queued"
    assert requeued.preemptions == 1
    assert requeued.error_retries == 0
    assert not requeued.preempt_requested
    assert "resumes at epoch 3, step 40 (checkpoints/epoch-2.pt)" in requeued.status_reason

    resumed = _claim(leases, team)
    assert resumed.attempt == 2
    assert resumed.status_reason == (
        "claimed by agent-a (attempt 2); resumes at epoch 3, step 40 (checkpoints/epoch-2.pt)")
    assert runs.history(run.id)[-1].details["resume_epoch"] == 2
    runs.transition(run.id, "Running", "training", attempt=2)
    failed = leases.preempted(run.id, 2, "evicted")  # the second preemption is over the budget of 1
    assert failed.status == "Failed"
    assert "preempted 2 times" in failed.status_reason
    assert [h.status for h in runs.history(submitted.id)] == [
        "Queued",
        "Preparing",
        "Running",
        "Preempted",
        "Queued",
        "Preparing",
        "Running",
        "Preempted",
        "Failed",
    ]


def test_a_preempted_worker_that_dies_counts_as_a_preemption(
    runs: RunService, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.spot, recipe, max_error_retries=0)
    run = _claim(leases, team)
    runs.request_preempt(run.id, "spot eviction")
    [reaped] = leases.requeue_expired(utcnow() + LATER)
    assert reaped.status == "Queued"  # not Failed: the error budget of 0 was not touched
    assert reaped.preemptions == 1
    assert "requeued after preemption; starts over (no checkpoint yet)" in reaped.status_reason
    assert [h.status for h in runs.history(run.id)][-2:] == ["Preempted", "Queued"]


def test_release_after_the_end_and_release_of_an_unfinished_run(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    run = _claim(leases, team)
    runs.transition(run.id, "Running", "t", attempt=1)
    runs.transition(run.id, "Finalizing", "f", attempt=1)
    runs.transition(run.id, "Completed", "done", attempt=1)
    recorder.append_logs(run.id, 1, ["the last line, after Completed"])  # still holds its lease
    released = leases.release_lease(run.id, 1, "agent-a")
    assert released.lease_owner is None
    assert released.status == "Completed"
    assert leases.release_lease(run.id, 1, "agent-a") == released  # harmless twice
    with pytest.raises(StaleAttempt):
        recorder.append_logs(run.id, 1, ["too late"])

    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    died = _claim(leases, team)
    runs.transition(died.id, "Canceled", "stopped", attempt=died.attempt)  # then it died before releasing
    assert runs.get(died.id).lease_owner == "agent-a"
    assert leases.requeue_expired(utcnow() + LATER) == []
    assert runs.get(died.id).lease_owner is None

    runs.submit(team.workspace, "pets", team.dedicated, recipe)
    unfinished = _claim(leases, team)
    given_back = leases.release_lease(unfinished.id, 1, "agent-a")
    assert given_back.status == "Queued"
    assert "released the run before it ended" in given_back.status_reason
    assert given_back.error_retries == 1
