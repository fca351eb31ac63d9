"""Live run updates for the portal: one poller per watched run, shared by every client that watches it.

`GET /api/v1/runs/{run_id}/events` (routers/events.py) is a server-sent event stream. However many
clients have a run's page open, the server reads that run from the store once per POLL_S: a `RunFeed`
polls it while at least one client listens, keeps what it has seen (the run, its status history, its
metrics, the last LOG_TAIL log lines) and hands each change to every subscriber. A client that
connects gets a `snapshot` of that state at once, then the changes as they happen:

    snapshot  {run, history, metrics, logs}   the state now (also after a reconnect)
    run       RunPublic                        status, progress, cost, ... whenever they change
    status    [StatusChangePublic]             new entries of the status history, oldest first
    metrics   [MetricPointPublic]              new (or changed) points, by step then key
    log       [LogLinePublic]                  new log lines
    end       {status, reason}                 the run has ended; the stream closes after it

Event ids count the feed's changes, so a client sees them in order and can tell none was skipped.
A client that disconnects is unsubscribed at once (Starlette cancels its stream), and a feed stops
polling when its last subscriber leaves. A client that falls MAX_BACKLOG changes behind is
disconnected; its EventSource reconnects and starts again from a fresh snapshot.

The store is read in a worker thread by `core.follow.poll`, whose rules of what to read again the CLI
and the SDK follow too; what changed for the clients is worked out on the event loop, and each change
is serialised once for all subscribers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from fastapi.sse import ServerSentEvent

from modelbuilder.core.follow import News, Seen, poll
from modelbuilder.core.services import Services
from modelbuilder.errors import ModelBuilderError, NotFound
from modelbuilder.sdk import results
from modelbuilder.server.schemas import LogLinePublic, MetricPointPublic, RunPublic, StatusChangePublic

log = logging.getLogger("modelbuilder.server")

POLL_S = 0.5  # how often a watched run is read from the store (its worker reports about once a second)
METRICS_REFRESH_S = 10.0  # every point is read again this often (the new steps: whenever core.follow.poll says)
LOG_TAIL = 1000  # log lines a snapshot carries (the whole log: GET .../logs)
MAX_BACKLOG = 500  # changes queued for one client before it is dropped (it reconnects to a snapshot)


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class _Read:
    """What one poll read from the store (in a worker thread)."""

    news: News  # the run, and what is new (core.follow's rules of what to read again)
    workspace: str
    has_results: bool

@dataclass
class _Subscriber:
    pending: deque[ServerSentEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


class RunFeed:
    """One watched run: polls the store while someone listens, and fans its changes out."""

    def __init__(self, services: Services, run_id: str) -> None:
        self.services, self.run_id = services, run_id
        self.subscribers: list[_Subscriber] = []
        self.ready = asyncio.Event()  # the first poll is in
        self.seq = 0
        self.ended = False  # the run ended (or was deleted, or reading it failed): `end_event` says how
        self.end_event: ServerSentEvent | None = None
        self.task: asyncio.Task[None] | None = None
        # What the clients have been told (JSON-ready), and where the next poll starts.
        self.run: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.metrics: dict[tuple[str, int], dict[str, Any]] = {}
        self.logs: deque[dict[str, Any]] = deque(maxlen=LOG_TAIL)
        self.seen = Seen()  # moved on by each poll, in the worker thread (one poll at a time)
        self._workspace: dict[str, str] = {}
        self._metrics_read_at = 0.0

    # --- reading the store (worker thread) ------------------------------------------------------------
    def _read(self, every_metric: bool) -> _Read:
        news = poll(self.services.runs, self.services.recorder, self.run_id, self.seen, every_metric=every_metric,
                    log_tail=LOG_TAIL)
        if news.run.workspace_id not in self._workspace:
            self._workspace = self.services.workspaces.names_by_id()
        workspace = self._workspace.get(news.run.workspace_id, "")
        return _Read(news, workspace, results.has_results(self.services, self.run_id))

    # --- working out the changes (event loop) ----------------------------------------------------------
    def _apply(self, read: _Read) -> list[tuple[str, Any]]:
        news = read.news
        changes: list[tuple[str, Any]] = []
        if news.changes:
            new = [StatusChangePublic.of(c).model_dump(mode="json") for c in news.changes]
            self.history += new
            changes.append(("status", new))
        if news.metrics is not None:
            fresh = []
            for point in news.metrics:
                known = self.metrics.get((point.key, point.step))
                dumped = MetricPointPublic.of(point).model_dump(mode="json") if known is None or (
                    known["value"] != point.value) else None
                if dumped is not None:
                    self.metrics[(point.key, point.step)] = dumped
                    fresh.append(dumped)
            if fresh:
                changes.append(("metrics", sorted(fresh, key=lambda p: (p["step"], p["key"]))))
        if news.logs:
            new_lines = [LogLinePublic.of(line).model_dump(mode="json") for line in news.logs]
            self.logs.extend(new_lines)
            changes.append(("log", new_lines))
        run = RunPublic.of(news.run, read.workspace, read.has_results).model_dump(mode="json")
        if {k: v for k, v in run.items() if k != "duration_s"} != {
                k: v for k, v in self.run.items() if k != "duration_s"}:
            changes.append(("run", run))
        self.run = run
        if news.run.terminal:
            self.ended = True
            changes.append(("end", {"status": news.run.status, "reason": news.run.status_reason}))
        return changes

    def _publish(self, changes: list[tuple[str, Any]]) -> None:
        for kind, data in changes:
            self.seq += 1
            event = ServerSentEvent(event=kind, raw_data=_json(data), id=str(self.seq))
            if kind == "end":
                self.end_event = event
            for subscriber in self.subscribers:
                if len(subscriber.pending) >= MAX_BACKLOG:
                    subscriber.dropped = True
                else:
                    subscriber.pending.append(event)
                subscriber.wake.set()

    def snapshot(self) -> ServerSentEvent:
        data = {"run": self.run, "history": self.history,
                "metrics": sorted(self.metrics.values(), key=lambda p: (p["key"], p["step"])),
                "logs": list(self.logs)}
        return ServerSentEvent(event="snapshot", raw_data=_json(data), id=str(self.seq))

    # --- the poller -------------------------------------------------------------------------------------
    async def poll_forever(self) -> None:
        while self.subscribers and not self.ended:
            due = time.monotonic() - self._metrics_read_at >= METRICS_REFRESH_S
            if due:
                self._metrics_read_at = time.monotonic()
            read = partial(self._read, due)
            try:
                self._publish(self._apply(await anyio.to_thread.run_sync(read)))
            except NotFound:  # the run was deleted while watched
                self.ended = True
                self._publish([("end", {"status": "Deleted", "reason": "the run was deleted"})])
            except ModelBuilderError as exc:  # the store is unavailable for a moment: try again
                log.warning("live updates of %s: %s", self.run_id, exc)
                await asyncio.sleep(POLL_S)
                continue
            except Exception:  # a bug of ours: end the streams (the page falls back to polling the API)
                log.exception("live updates of %s failed", self.run_id)
                self.ended = True
                self._publish([("end", {"status": "unknown", "reason": "live updates failed; reload the page"})])
            self.ready.set()
            if not self.ended:
                await asyncio.sleep(POLL_S)


class RunFeeds:
    """Every watched run's feed, in the server's event loop; `follow` is one client's stream."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.feeds: dict[str, RunFeed] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def streams(self) -> int:
        """Event streams open now."""
        return sum(len(feed.subscribers) for feed in self.feeds.values())

    def _feed(self, run_id: str) -> RunFeed:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an app served by a new loop (test clients): the old one's feeds died with it
            self._loop, self.feeds = loop, {}
        feed = self.feeds.get(run_id)
        if feed is None:
            feed = self.feeds[run_id] = RunFeed(self.services, run_id)
        return feed

    async def follow(self, run_id: str) -> AsyncIterator[ServerSentEvent]:
        """The snapshot, then every change, until the run ends or the client goes."""
        feed = self._feed(run_id)
        subscriber = _Subscriber()
        feed.subscribers.append(subscriber)
        if feed.task is None:
            feed.task = asyncio.create_task(feed.poll_forever(), name=f"live {run_id}")
        try:
            await feed.ready.wait()
            snapshot = feed.snapshot()
            subscriber.pending.clear()  # the snapshot holds them
            yield snapshot
            if feed.end_event is not None and not subscriber.pending:  # it had ended before this client came
                yield feed.end_event
                return
            while not subscriber.dropped:
                while subscriber.pending:
                    event = subscriber.pending.popleft()
                    yield event
                    if event.event == "end":
                        return
                subscriber.wake.clear()
                await subscriber.wake.wait()
        finally:
            self._leave(feed, subscriber)

    def _leave(self, feed: RunFeed, subscriber: _Subscriber) -> None:
        feed.subscribers.remove(subscriber)
        if not feed.subscribers:
            if feed.task is not None:
                feed.task.cancel()
            if self.feeds.get(feed.run_id) is feed:
                del self.feeds[feed.run_id]

    def close(self) -> None:
        for feed in self.feeds.values():
            if feed.task is not None:
                feed.task.cancel()
        self.feeds = {}
