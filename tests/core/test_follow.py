"""core/follow.py: one poll reads what is new since the follower's cursor, and nothing it already has; the
stream of events is in order and ends with the run."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from modelbuilder.core.entities import utcnow
from modelbuilder.core.follow import Seen, follow, poll
from modelbuilder.core.leases import LeaseService
from modelbuilder.core.recording import RunRecorder
from modelbuilder.core.runs import RunService
from tests.core.conftest import claim, running

if TYPE_CHECKING:
    from tests.core.conftest import Team

Recipe = dict[str, object]


def test_a_poll_reads_what_is_new_and_moves_the_cursor(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = running(runs, leases, team, recipe)
    seen = Seen()
    first = poll(runs, recorder, run.id, seen)
    assert [c.status for c in first.changes or []] == ["Queued", "Preparing", "Running"]
    assert first.metrics == []
    assert first.logs == []

    quiet = poll(runs, recorder, run.id, seen)
    assert (quiet.changes, quiet.metrics, quiet.logs) == (None, None, [])  # nothing moved: nothing read again

    recorder.append_logs(run.id, 1, ["epoch 1 starts", "epoch 1 done"])
    recorder.log_metrics(run.id, 1, 1, {"val_accuracy": 0.5})
    recorder.set_best_metrics(run.id, 1, {"val_accuracy": 0.5})  # what moves as an epoch's metrics are written
    news = poll(runs, recorder, run.id, seen)
    assert news.changes is None
    assert [(p.key, p.step) for p in news.metrics or []] == [("val_accuracy", 1)]
    assert [line.message for line in news.logs] == ["epoch 1 starts", "epoch 1 done"]

    recorder.log_metrics(run.id, 1, 2, {"val_accuracy": 0.75})
    recorder.set_best_metrics(run.id, 1, {"val_accuracy": 0.75})
    assert [p.step for p in poll(runs, recorder, run.id, seen).metrics or []] == [2]  # only the new epoch
    every = poll(runs, recorder, run.id, seen, every_metric=True)
    assert [p.step for p in every.metrics or []] == [1, 2]


def test_a_new_attempt_s_epochs_after_its_checkpoint_are_read_again(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = running(runs, leases, team, recipe)
    for epoch in (1, 2):
        recorder.log_metrics(run.id, 1, epoch, {"val_loss": 1.0 / epoch})
    recorder.set_resume_point(run.id, 1, "checkpoints/last.pt", 1, 0)  # the last checkpoint: after epoch 1
    seen = Seen()
    poll(runs, recorder, run.id, seen)
    leases.requeue_expired(utcnow() + timedelta(hours=1))  # attempt 1 lost; attempt 2 resumes after epoch 1
    resumed = claim(leases, team, owner="agent-b")
    runs.transition(run.id, "Running", "resumed", attempt=resumed.attempt)
    recorder.log_metrics(run.id, 2, 2, {"val_loss": 0.4})  # epoch 2 again, with other weights
    news = poll(runs, recorder, run.id, seen)
    assert [(p.step, p.value) for p in news.metrics or []] == [(2, 0.4)]


def test_follow_streams_the_events_in_order_and_ends_with_the_run(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = running(runs, leases, team, recipe)
    recorder.append_logs(run.id, 1, ["training"])
    recorder.log_metrics(run.id, 1, 1, {"val_accuracy": 0.5})
    runs.transition(run.id, "Finalizing", "exporting", attempt=1)
    runs.transition(run.id, "Completed", "done", attempt=1)
    events = list(follow(runs, recorder, run.id, poll_s=0))
    kinds = [event.kind for event in events]
    assert kinds[-1] == "end"
    assert events[-1].run.status == "Completed"
    assert [e.status.status for e in events if e.kind == "status"] == [  # type: ignore[union-attr]
        "Queued", "Preparing", "Running", "Finalizing", "Completed"]
    assert [(e.epoch, e.values) for e in events if e.kind == "metrics"] == [(1, {"val_accuracy": 0.5})]
    assert [e.log.message for e in events if e.kind == "log"] == ["training"]  # type: ignore[union-attr]


def test_follow_gives_up_after_its_timeout(
    runs: RunService, recorder: RunRecorder, leases: LeaseService, team: Team, recipe: Recipe
) -> None:
    run = running(runs, leases, team, recipe)
    with pytest.raises(TimeoutError, match="still Running"):
        list(follow(runs, recorder, run.id, poll_s=0, timeout=0))
