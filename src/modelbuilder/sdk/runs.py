"""Runs, as the CLI reads them: list, show (status history, files, a sweep's trials), the log and its live
events, cancel, download, the images it got wrong and its data report.

With a `client` (`sdk.client.Client`: a server and no store shared with it) they go through the REST API
and come back as the entities the store gives (`sdk.remote.RunsAPI`, `run_of`), so one renderer shows
both; without, through the store in this process.

    from modelbuilder.sdk import runs
    for run in runs.list_runs(services, client=client):
        print(run.id, run.status)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from modelbuilder.core import entities as e
from modelbuilder.core.follow import RunEvent, follow
from modelbuilder.core.services import Services
from modelbuilder.sdk import insight, remote, results, sweep, wait
from modelbuilder.sdk.client import Client
from modelbuilder.training.predictions import Prediction

LOG_LINES = 100_000  # the most lines `logs` gives
LOG_PAGE = 10_000  # lines asked of the server at once (its most)


def list_runs(services: Services, workspace: str | None = None, *, experiment: str | None = None,
              status: str | None = None, limit: int = 50, client: Client | None = None) -> list[e.Run]:
    """The workspace's runs, newest first."""
    if client is not None:
        return remote.RunsAPI(client).list_runs(services.workspaces.resolve(workspace), experiment, status, limit)
    return services.runs.list(services.workspaces.resolve(workspace), experiment=experiment, status=status,
                              limit=limit)


def get(services: Services, run_id: str, client: Client | None = None) -> e.Run:
    return services.runs.get(run_id) if client is None else remote.RunsAPI(client).get(run_id)


def history(services: Services, run_id: str, client: Client | None = None) -> list[e.StatusChange]:
    """Every status change of the run, oldest first."""
    return services.runs.history(run_id) if client is None else remote.RunsAPI(client).history(run_id)


def artifacts(services: Services, run_id: str, client: Client | None = None) -> list[e.ArtifactRecord]:
    """The run's files as recorded when it ended (through a server: what its folder holds until then)."""
    return services.recorder.artifacts(run_id) if client is None else remote.RunsAPI(client).artifacts(run_id)


def trials(services: Services, run: e.Run, client: Client | None = None) -> list[sweep.Trial]:
    """A sweep's leaderboard, best first (`sdk.sweep.leaderboard`)."""
    return sweep.leaderboard(services, run) if client is None else remote.RunsAPI(client).trials(run.id)


def logs(services: Services, run_id: str, client: Client | None = None) -> list[e.LogLine]:
    """The run's log, oldest first, at most LOG_LINES lines (from a server, in pages of LOG_PAGE)."""
    if client is None:
        return services.recorder.logs(run_id, limit=LOG_LINES)
    api = remote.RunsAPI(client)
    lines: list[e.LogLine] = []
    while len(lines) < LOG_LINES:
        page = api.logs(run_id, after_seq=lines[-1].seq if lines else 0, limit=LOG_PAGE)
        lines.extend(page)
        if len(page) < LOG_PAGE:
            break
    return lines[:LOG_LINES]


def events(services: Services, run_id: str, client: Client | None = None, timeout: float | None = None
           ) -> Iterator[RunEvent]:
    """The run's events (status changes, log lines, each epoch's metrics, progress) until its 'end' event;
    only follows, as `sdk.wait.events` does. TimeoutError when it has not ended within `timeout` seconds."""
    if client is None:
        return wait.events(services, run_id, timeout=timeout)
    api = remote.RunsAPI(client)
    return follow(api, api, run_id, wait.POLL_S, timeout=timeout)


def wait_for(services: Services, run_id: str, *, on_event: Callable[[RunEvent], None] | None = None,
             timeout: float | None = None, client: Client | None = None) -> e.Run:
    """Until the run ends, each event to `on_event`; the run as it ended. Locally an agent runs the queue
    meanwhile when no server does (`sdk.wait.wait`); a server's runs are its agents' to run."""
    if client is None:
        return wait.wait(services, run_id, on_event=on_event, timeout=timeout)
    for event in events(services, run_id, client, timeout):
        if on_event is not None:
            on_event(event)
        if event.kind == "end":
            return event.run
    raise AssertionError("follow ends with an 'end' event")  # pragma: no cover


def metrics(services: Services, run_id: str, client: Client | None = None) -> list[e.MetricPoint]:
    """Every metric point the run recorded, by key, then step."""
    return services.recorder.metrics(run_id) if client is None else remote.RunsAPI(client).metrics(run_id)


def evaluation(services: Services, run: e.Run, client: Client | None = None) -> dict[str, Any]:
    """metrics.json of a finished run (`sdk.results.evaluation`); Conflict (409) before it has results."""
    return results.evaluation(services, run) if client is None else remote.RunsAPI(client).evaluation(run.id)


def thumbnail(services: Services, run: e.Run, kind: str, index: int, client: Client | None = None) -> bytes:
    """The JPEG of image `index` of the gallery `kind` (`sdk.insight.thumbnail`)."""
    if client is not None:
        return remote.RunsAPI(client).thumbnail(run.id, kind, index)
    return insight.thumbnail(services, run, kind, index)


def cancel(services: Services, run_id: str, client: Client | None = None) -> e.Run:
    """A queued run ends now; a running one stops at its next step and keeps its best model (409 once ended)."""
    return services.runs.request_cancel(run_id) if client is None else remote.RunsAPI(client).cancel(run_id)


def download(services: Services, run_id: str, output: str | Path, client: Client | None = None
             ) -> dict[str, Path]:
    """The run's projects and its three assets into `output`: what was placed there, by name."""
    if client is not None:
        return remote.download(client, run_id, output)
    return results.download(services, services.runs.get(run_id), output)


def errors(services: Services, run_id: str, *, label: str | None = None, true: str | None = None,
           predicted: str | None = None, include_correct: bool = False, limit: int | None = None,
           client: Client | None = None) -> list[Prediction]:
    """The validation images the run got wrong, the most confidently wrong first (`sdk.insight.errors`)."""
    if client is not None:
        return remote.RunsAPI(client).errors(run_id, label=label, true=true, predicted=predicted,
                                             include_correct=include_correct, limit=limit)
    return insight.errors(services, services.runs.get(run_id), label=label, true=true, predicted=predicted,
                          include_correct=include_correct, limit=limit)


def data_report(services: Services, run_id: str, client: Client | None = None) -> dict[str, Any]:
    """The run's data report (`sdk.insight.data_report`)."""
    if client is not None:
        return remote.RunsAPI(client).data_report(run_id)
    return insight.data_report(services, services.runs.get(run_id))
