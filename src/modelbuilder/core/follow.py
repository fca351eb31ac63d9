"""Following a run from the store: what the CLI, the SDK and the portal's live view show while it trains.

Everything comes from the store (the one source of truth), so any process can follow any run,
including one started by another process or a server. `poll` is one look: the run, and what is new
since the `Seen` cursor it moves on. Its rules of what to read again are the ones every follower
needs, so they are written here once:

- the status history is read again only when the run's status, attempt or reason moved;
- metrics are read when what moves as an epoch's metrics are written moved (the epoch or phase the
  run reports, its best metrics, its checkpoint, its attempt), and then only the steps after the
  last one seen; at the end of the run always, so a follower misses no epoch. A new attempt logs
  again the epochs after the checkpoint it resumed from, so those are read again;
- log lines are read after the run, so every line written before it ended is in.

`follow` turns polls into a stream of `RunEvent`s, in the order they happened, until the run ends. It reads
through `RunReads` and `RecordReads`: the store's services, or the REST API for a client that shares no
store with the server (`sdk.remote.RunsAPI`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelbuilder.core import entities as e

LOG_PAGE = 1000


class RunReads(Protocol):
    """What following reads of a run itself (`core.runs.RunService` has it)."""

    def get(self, run_id: str) -> e.Run: ...

    def history(self, run_id: str) -> list[e.StatusChange]: ...


class RecordReads(Protocol):
    """What following reads of what a run recorded (`core.recording.RunRecorder` has it)."""

    def metrics(self, run_id: str, key: str | None = None, after_step: int | None = None) -> list[e.MetricPoint]: ...

    def logs(self, run_id: str, after_seq: int = 0, limit: int = 1000) -> list[e.LogLine]: ...


@dataclass
class Seen:
    """What a follower has seen of one run: where its next poll starts."""

    changes: int = 0  # status changes
    log_seq: int = 0
    step: int = 0  # the last step (epoch) whose metrics were read
    status_key: tuple[Any, ...] | None = None
    metrics_key: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class News:
    """One poll's reading: the run as it is, and what is new. None where nothing needed reading."""

    run: e.Run
    changes: list[e.StatusChange] | None
    metrics: list[e.MetricPoint] | None
    logs: list[e.LogLine]


def _status_key(run: e.Run) -> tuple[Any, ...]:
    return run.status, run.attempt, run.status_reason


def _metrics_key(run: e.Run) -> tuple[Any, ...]:
    progress = run.progress or {}
    return (run.attempt, progress.get("epoch"), progress.get("phase"), run.best_metrics, run.resume_epoch,
            run.resume_step, run.terminal)


def poll(runs: RunReads, recorder: RecordReads, run_id: str, seen: Seen, *, every_metric: bool = False,
         logs: bool = True, log_tail: int | None = None) -> News:
    """Read the run and what is new since `seen`, and move `seen` on.

    `every_metric`: read every point again, not only the new steps (a point an attempt logs again after
    resuming from an earlier checkpoint keeps its step). `log_tail`: keep only the last lines of a
    long backlog.
    """
    run = runs.get(run_id)
    changes = None
    if _status_key(run) != seen.status_key:
        history = runs.history(run_id)
        changes, seen.changes, seen.status_key = history[seen.changes:], len(history), _status_key(run)
    metrics = None
    if seen.metrics_key is not None and run.attempt != seen.metrics_key[0]:
        seen.step = min(seen.step, run.resume_epoch or 0)
    if every_metric or _metrics_key(run) != seen.metrics_key:
        metrics = recorder.metrics(run_id, after_step=None if every_metric else seen.step)
        seen.step = max([seen.step, *(point.step for point in metrics)])
        seen.metrics_key = _metrics_key(run)
    lines: list[e.LogLine] = []
    while logs:
        page = recorder.logs(run_id, after_seq=seen.log_seq, limit=LOG_PAGE)
        lines = (lines + page)[-log_tail:] if log_tail else lines + page
        if page:
            seen.log_seq = page[-1].seq
        if len(page) < LOG_PAGE:
            break
    return News(run, changes, metrics, lines)


@dataclass(frozen=True)
class RunEvent:
    kind: str  # "status" | "log" | "metrics" | "progress" | "end"
    run: e.Run
    status: e.StatusChange | None = None
    log: e.LogLine | None = None
    epoch: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)


def follow(runs: RunReads, recorder: RecordReads, run_id: str, poll_s: float = 0.5, logs: bool = True,
           timeout: float | None = None) -> Iterator[RunEvent]:
    """Events of `run_id` in order, until it ends (the last event has kind 'end'). TimeoutError when it
    has not ended `timeout` seconds from now."""
    deadline = None if timeout is None else time.monotonic() + timeout
    seen, epochs_shown = Seen(), 0
    last_progress: dict[str, Any] = {}
    while True:
        news = poll(runs, recorder, run_id, seen, logs=logs)
        run = news.run
        events: list[tuple[Any, int, RunEvent]] = []  # (time, tie-break, event): shown in the order they happened
        for change in news.changes or ():
            events.append((change.at, 0, RunEvent("status", run, status=change)))
        for line in news.logs:
            events.append((line.at, 1, RunEvent("log", run, log=line)))
        by_epoch: dict[int, dict[str, float]] = {}
        stamps: dict[int, Any] = {}
        for point in news.metrics or ():
            if point.step > epochs_shown:
                by_epoch.setdefault(point.step, {})[point.key] = point.value
                stamps[point.step] = max(stamps.get(point.step, point.at), point.at)
        for epoch in sorted(by_epoch):
            events.append((stamps[epoch], 2, RunEvent("metrics", run, epoch=epoch, values=by_epoch[epoch])))
            epochs_shown = max(epochs_shown, epoch)
        for _, _, event in sorted(events, key=lambda item: (item[0], item[1])):
            yield event
        if run.progress and run.progress != last_progress:
            last_progress = run.progress
            yield RunEvent("progress", run, progress=run.progress)
        if run.terminal:
            yield RunEvent("end", run)
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {run.status} after {timeout} s")
        time.sleep(poll_s)
