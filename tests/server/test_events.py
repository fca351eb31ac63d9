"""`GET /api/v1/runs/{run_id}/events`, the run page's live updates, against a real `modelbuilder server`:
every change of a real run arrives once and in order, a client that goes away frees what it held, and
the stream is as closed to strangers as the rest of the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.imagery import make_image_folder
from tests.sse import Event, events

from .conftest import TINY_RECIPE, TOKEN, LiveServer

ORDER = ["Queued", "Preparing", "Running", "Finalizing", "Completed"]
WAIT_S = 60.0


def submit(server: LiveServer, data: Path, headers: dict[str, str] | None = None, **recipe: object) -> str:
    body = {"experiment": "pets", "recipe": {"data": str(data), **TINY_RECIPE, **recipe}}
    response = httpx.post(f"{server.url}/api/v1/runs", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def health(server: LiveServer, headers: dict[str, str] | None = None) -> dict[str, int]:
    return httpx.get(f"{server.url}/api/v1/health", headers=headers, timeout=30).json()  # type: ignore[no-any-return]


def wait_for_health(server: LiveServer, streams: int, followed: int, headers: dict[str, str] | None = None) -> None:
    """Until the server counts `streams` open streams on `followed` runs (a condition, not a time)."""
    deadline = time.monotonic() + WAIT_S
    while (now := health(server, headers))["streams"] != streams or now["followed_runs"] != followed:
        assert time.monotonic() < deadline, (now, streams, followed)
        time.sleep(0.05)


def test_every_change_of_a_real_run_arrives_once_and_in_order(start_server: Callable[..., LiveServer],
                                                              tmp_path: Path) -> None:
    server = start_server()
    run_id = submit(server, make_image_folder(tmp_path / "pets", per_label=10), epochs=3, early_stopping_patience=3)
    api = f"{server.url}/api/v1/runs/{run_id}"
    with httpx.stream("GET", f"{api}/events", timeout=httpx.Timeout(30, read=300)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        received: list[Event] = list(events(response))  # the server closes the stream after `end`
    snapshot, changes = received[0], received[1:]
    assert snapshot.kind == "snapshot"
    assert [event.kind for event in changes][-1] == "end"
    assert "end" not in [event.kind for event in changes[:-1]]
    assert [event.id for event in changes] == list(range(snapshot.id + 1, snapshot.id + 1 + len(changes)))

    # What the snapshot held and the changes added up to is the run's whole record, in its order.
    history = snapshot.data["history"] + [c for event in changes if event.kind == "status" for c in event.data]
    assert history == httpx.get(f"{api}/history").json()
    assert [change["status"] for change in history] == ORDER
    statuses = [snapshot.data["run"]["status"]] + [event.data["status"] for event in changes if event.kind == "run"]
    assert [ORDER.index(s) for s in statuses] == sorted(ORDER.index(s) for s in statuses)
    assert statuses[-1] == "Completed"
    lines = snapshot.data["logs"] + [line for event in changes if event.kind == "log" for line in event.data]
    assert lines == httpx.get(f"{api}/logs").json()["lines"]
    points = {(p["key"], p["step"]): p for p in snapshot.data["metrics"]}
    for event in changes:
        if event.kind == "metrics":
            assert [p["step"] for p in event.data] == sorted(p["step"] for p in event.data)
            points.update({(p["key"], p["step"]): p for p in event.data})
    assert sorted(points.values(), key=lambda p: (p["key"], p["step"])) == httpx.get(f"{api}/metrics").json()
    assert {step for _, step in points} == {1, 2, 3}
    assert changes[-1].data == {"status": "Completed", "reason": history[-1]["reason"]}

    # A client that comes after the end gets the final state at once, then the end.
    with httpx.stream("GET", f"{api}/events", timeout=30) as response:
        late = list(events(response))
    assert [event.kind for event in late] == ["snapshot", "end"]
    assert late[0].data["history"] == history
    wait_for_health(server, streams=0, followed=0)


def test_clients_that_go_away_free_their_streams_and_the_poller(start_server: Callable[..., LiveServer],
                                                                 tmp_path: Path) -> None:
    """Three clients on one run share one poller; each that disconnects is let go, the last one stops it."""
    server = start_server("--no-agent")  # the run stays Queued: its streams stay open until the clients leave
    run_id = submit(server, make_image_folder(tmp_path / "pets", per_label=10))
    clients = [httpx.Client(timeout=30) for _ in range(3)]
    streams: list[tuple[httpx.Response, Iterator[Event]]] = []  # each reader kept: dropping it closes the stream
    try:
        for client in clients:
            stream = client.send(client.build_request("GET", f"{server.url}/api/v1/runs/{run_id}/events"), stream=True)
            reader = events(stream)
            first = next(reader)
            assert (first.kind, first.data["run"]["status"]) == ("snapshot", "Queued")
            streams.append((stream, reader))
        wait_for_health(server, streams=3, followed=1)
        streams.pop()[0].close()
        clients.pop().close()
        wait_for_health(server, streams=2, followed=1)
        while streams:
            streams.pop()[0].close()
            clients.pop().close()
        wait_for_health(server, streams=0, followed=0)
        # A new client starts a new poller, which still sees the run change.
        with httpx.stream("GET", f"{server.url}/api/v1/runs/{run_id}/events", timeout=30) as response:
            received = events(response)
            assert next(received).kind == "snapshot"
            assert httpx.post(f"{server.url}/api/v1/runs/{run_id}/cancel", timeout=30).status_code == 200
            kinds = [event.kind for event in received]
        assert kinds[-1] == "end"
        assert "status" in kinds
    finally:
        for stream, _ in streams:
            stream.close()
        for client in clients:
            client.close()
    wait_for_health(server, streams=0, followed=0)


def test_the_stream_needs_the_token_like_every_other_request(start_server: Callable[..., LiveServer],
                                                              tmp_path: Path) -> None:
    server = start_server("--token", TOKEN, "--no-agent")
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    run_id = submit(server, make_image_folder(tmp_path / "pets", per_label=10), headers=bearer)
    url = f"{server.url}/api/v1/runs/{run_id}/events"
    for headers in ({}, {"Authorization": "Bearer not-the-token-at-all"}, {"Cookie": "modelbuilder_session=guess"}):
        refused = httpx.get(url, headers=headers, timeout=30)
        assert refused.status_code == 401, headers
        assert refused.json()["code"] == "unauthorized"
        assert "data:" not in refused.text
    # The portal's EventSource cannot set headers: it sends the session cookie that signing in sets.
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        signed_in = browser.post("/login", data={"token": TOKEN, "next": "/"})
        assert signed_in.status_code == 303
        for headers in ({}, bearer):
            with browser.stream("GET", url, headers=headers) as response:
                assert response.status_code == 200
                first = next(events(response))
            assert (first.kind, first.data["run"]["id"]) == ("snapshot", run_id)
    wait_for_health(server, streams=0, followed=0, headers=bearer)


@pytest.mark.parametrize("run_id", ["run-000000000000", "not-a-run"])
def test_a_run_that_does_not_exist_is_a_404_not_a_stream(client: TestClient, run_id: str) -> None:
    response = client.get(f"/api/v1/runs/{run_id}/events")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
