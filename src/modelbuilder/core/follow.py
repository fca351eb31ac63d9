"""Following a run from the store: what the CLI, the SDK and `runs logs --follow` show while it trains.

Everything comes from the store (the one source of truth), so any process can follow any run,
including one started by another process or a server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from modelbuilder.core import entities as e
from modelbuilder.core.runs import RunService


@dataclass(frozen=True)
class RunEvent:
    kind: str  # "status" | "log" | "metrics" | "progress" | "end"
    run: e.Run
    status: e.StatusChange | None = None
    log: e.LogLine | None = None
    epoch: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)


def follow(runs: RunService, run_id: str, poll_s: float = 0.5, logs: bool = True) -> Iterator[RunEvent]:
    """Events of `run_id` in order, until it ends (the last event has kind 'end')."""
    seen_changes, log_seq, seen_epochs = 0, 0, 0
    last_progress: dict[str, Any] = {}
    while True:
        run = runs.get(run_id)
        events: list[tuple[Any, int, RunEvent]] = []  # (time, tie-break, event): shown in the order they happened
        history = runs.history(run_id)
        for change in history[seen_changes:]:
            events.append((change.at, 0, RunEvent("status", run, status=change)))
        seen_changes = len(history)
        if logs:
            for line in runs.logs(run_id, after_seq=log_seq):
                log_seq = line.seq
                events.append((line.at, 1, RunEvent("log", run, log=line)))
        by_epoch: dict[int, dict[str, float]] = {}
        stamps: dict[int, Any] = {}
        for point in runs.metrics(run_id):
            if point.step > seen_epochs:
                by_epoch.setdefault(point.step, {})[point.key] = point.value
                stamps[point.step] = max(stamps.get(point.step, point.at), point.at)
        for epoch in sorted(by_epoch):
            events.append((stamps[epoch], 2, RunEvent("metrics", run, epoch=epoch, values=by_epoch[epoch])))
            seen_epochs = max(seen_epochs, epoch)
        for _, _, event in sorted(events, key=lambda item: (item[0], item[1])):
            yield event
        if run.progress and run.progress != last_progress:
            last_progress = run.progress
            yield RunEvent("progress", run, progress=run.progress)
        if run.terminal:
            yield RunEvent("end", run)
            return
        time.sleep(poll_s)
