"""`/api/v1/runs/{run_id}/logs`: the log tail (poll with `after_seq`), and a live follow as server-sent
events that ends when the run ends.

The stream sends `log` events (id = the line's number, so a reconnecting EventSource resumes from
`Last-Event-ID`), a `status` event whenever the run's status changes, and a last `end` event.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from modelbuilder.core.services import Services
from modelbuilder.server.deps import RunDep, ServicesDep
from modelbuilder.server.schemas import LogLinePublic, LogTailPublic

router = APIRouter(prefix="/runs/{run_id}/logs", tags=["logs"])
POLL_S = 0.5
KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0  # one connection at most an hour; an EventSource reconnects and resumes
PAGE = 500


@router.get("")
def tail_logs(
    run: RunDep,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> LogTailPublic:
    """Log lines numbered above `after_seq`, oldest first; `next_seq` is what to pass next time."""
    lines = services.recorder.logs(run.id, after_seq=after_seq, limit=limit)
    return LogTailPublic(lines=[LogLinePublic.of(line) for line in lines],
                         next_seq=lines[-1].seq if lines else after_seq, status=run.status, terminal=run.terminal)


def _event(kind: str, data: object, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


async def _follow(services: Services, run_id: str, after_seq: int) -> AsyncIterator[str]:
    seq, status, started, quiet_since = after_seq, None, time.monotonic(), time.monotonic()
    while True:
        run = await anyio.to_thread.run_sync(services.runs.get, run_id)
        lines = await anyio.to_thread.run_sync(partial(services.recorder.logs, run_id, after_seq=seq, limit=PAGE))
        for line in lines:
            seq = line.seq
            yield _event("log", LogLinePublic.of(line).model_dump(mode="json"), line.seq)
        changed = run.status != status
        if changed:
            status = run.status
            yield _event("status", {"status": run.status, "reason": run.status_reason, "terminal": run.terminal})
        if lines or changed:
            quiet_since = time.monotonic()
        if run.terminal and len(lines) < PAGE:
            yield _event("end", {"status": run.status, "reason": run.status_reason})
            return
        if time.monotonic() - started > MAX_STREAM_S:
            return
        if time.monotonic() - quiet_since > KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await anyio.sleep(POLL_S if len(lines) < PAGE else 0)


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}})
def follow_logs(
    run: RunDep,
    services: ServicesDep,
    after_seq: Annotated[int, Query(ge=0, le=2**53)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Follow the log live as `text/event-stream` until the run ends (then an `end` event closes it)."""
    if last_event_id is not None and last_event_id.isdigit():
        after_seq = max(after_seq, int(last_event_id))
    return StreamingResponse(_follow(services, run.id, after_seq), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
