"""`/api/v1/runs/{run_id}/events`: a run's live updates as server-sent events (what the run page listens to).

One poller per watched run serves every client (server/live.py); this only opens a client's stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from modelbuilder.server.deps import RunDep, StateDep

router = APIRouter(prefix="/runs/{run_id}", tags=["runs"])


@router.get("/events", response_class=EventSourceResponse)
async def run_events(run: RunDep, state: StateDep) -> AsyncIterator[ServerSentEvent]:
    """Follow the run as `text/event-stream`: a `snapshot` event {run, history, metrics, logs}, then `run`,
    `status`, `metrics` and `log` events as they change, and a last `end` event when the run has ended.

    Event ids increase by one per change; after a reconnect the stream starts again from a snapshot.
    """
    async for event in state.feeds.follow(run.id):
        yield event
