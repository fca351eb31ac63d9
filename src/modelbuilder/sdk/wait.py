"""Waiting for a run: its events as they happen, with an agent running the queue meanwhile if none does.

The CLI renders the events (Rich progress bars), the SDK hands them to a callback or yields them,
and both wait the same way: `wait` runs an agent in this process while it waits unless a server
executes this store's queued runs (`config.server_runs_agent`), so a run submitted without a server
still trains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from modelbuilder.backends import start_agent
from modelbuilder.config import server_runs_agent
from modelbuilder.core import entities as e
from modelbuilder.core.follow import RunEvent, follow
from modelbuilder.core.scheduler import Agent
from modelbuilder.core.services import Services

POLL_S = 0.5


@contextmanager
def agent_while_waiting(services: Services) -> Iterator[Agent | None]:
    """An agent in this process for the duration of the block, unless a server runs queued runs."""
    agent = None if server_runs_agent(services.settings) else start_agent(services.store, poll_s=POLL_S)
    try:
        yield agent
    finally:
        if agent is not None:
            agent.stop()


def events(services: Services, run_id: str, *, logs: bool = True, timeout: float | None = None
           ) -> Iterator[RunEvent]:
    """The run's events (status changes, log lines, each epoch's metrics, progress) until its 'end' event.
    Only follows: nothing is started (see `wait`)."""
    return follow(services.runs, services.recorder, run_id, POLL_S, logs, timeout)


def wait(services: Services, run_id: str, *, on_event: Callable[[RunEvent], None] | None = None,
         logs: bool = True, timeout: float | None = None) -> e.Run:
    """Until the run ends, with an agent while waiting; each event goes to `on_event`. Returns the run as it
    ended; TimeoutError when it has not ended within `timeout` seconds."""
    with agent_while_waiting(services):
        for event in events(services, run_id, logs=logs, timeout=timeout):
            if on_event is not None:
                on_event(event)
            if event.kind == "end":
                return event.run
    raise AssertionError("follow ends with an 'end' event")  # pragma: no cover


def describe(event: RunEvent) -> str | None:
    """One plain line for an event (the SDK's `show_progress`); None for progress ticks."""
    if event.kind == "status" and event.status is not None:
        return f"{event.status.status}: {event.status.reason}"
    if event.kind == "log" and event.log is not None:
        return f"[{event.log.level}] {event.log.message}"
    if event.kind == "metrics":
        shown = ", ".join(f"{key} {value:.4f}" for key, value in sorted(event.values.items()))
        return f"epoch {event.epoch}: {shown}"
    if event.kind == "end":
        return f"{event.run.id} ended {event.run.status}: {event.run.status_reason}"
    return None
