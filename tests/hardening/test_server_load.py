"""The API while training fills the CPU: 50 clients on the pages of two training runs, and what it costs
the training.

Two runs train, each on a compute of half the host's cores, so together they use every core, for the
whole drill (on a host of one usable core, as under `taskset -c 0`, one run fills it: a second would only
wait in the queue). Then, in one go:

    quiet      no client: the training throughput without clients
    portal     50 clients do what the run page does: load the page, open the run's event stream, fetch
               the data report, follow the events for 5-15 s, leave, come back (each visit timed)
    quiet
    polling    50 clients poll the run and its metrics every 0.2 s, as the page did before it had a stream
    quiet

The quiet phases are half as long as the others and bracket each of them; a phase's throughput is set
against the mean of the two quiet phases around it, so a machine that gets busier or quieter meanwhile
does not read as the clients' doing. Throughput comes from the store: the time each epoch ended (its
metrics) and the images an epoch trains on (the data report).

The test asserts no errors and no leaked streams; it never asserts on time. The figures go to
docs/RELIABILITY.md through `make reliability` (MODELBUILDER_LOAD_SECONDS=60 there; 20 here), and
longer where this machine's epochs are slow: each phase is sized from the epochs measured before it.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.imagery import make_image_folder
from tests.liveserver import Server
from tests.reliability import record
from tests.sse import Event, events

pytestmark = pytest.mark.slow

CLIENTS = 50
SECONDS = float(os.environ.get("MODELBUILDER_LOAD_SECONDS", "20"))
STAY_S = (5.0, 15.0)  # how long a portal client keeps a run's page open
POLL_S = 0.2
# Training heavy enough per epoch that its fixed costs (evaluation, checkpoint, store writes) are small.
STALL_S = 600  # a run that shows no progress for this long is hung
RECIPE = {"architecture": "tiny", "weights": "none", "image_size": 128, "batch_size": 16, "epochs": 10_000,
          "early_stopping_patience": 10_000, "name": "Tiny"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Tally:
    """What the clients of one phase saw: each request's time, each event's delay, the errors."""

    latencies: list[tuple[str, float]] = field(default_factory=list)  # (what, seconds)
    delays: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    events: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, what: str, call: Callable[[], httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = call()
        except httpx.HTTPError as exc:
            self.error(f"{type(exc).__name__} {what}")
            return None
        with self.lock:
            self.latencies.append((what, time.perf_counter() - started))
        if response.status_code != 200:
            self.error(f"{response.status_code} {what}")
            return None
        return response

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)

    def figures(self, seconds: float) -> dict[str, float]:
        ms = [x * 1000 for _, x in self.latencies]
        out = {"requests": len(ms), "p50_ms": round(statistics.median(ms), 1),
               "p95_ms": round(statistics.quantiles(ms, n=20)[-1], 1), "requests_per_s": round(len(ms) / seconds, 1)}
        for kind in sorted({what for what, _ in self.latencies}):
            of_kind = [x * 1000 for what, x in self.latencies if what == kind]
            out[f"p95_ms_{kind.replace(' ', '_')}"] = round(statistics.quantiles(of_kind, n=20)[-1], 1)
        if self.delays:
            out |= {"events": self.events, "event_delay_p50_ms": round(statistics.median(self.delays) * 1000),
                    "event_delay_p95_ms": round(statistics.quantiles(self.delays, n=20)[-1] * 1000)}
        return out


def portal_client(url: str, workspace: str, run_id: str, until: float, tally: Tally, seed: int) -> None:
    """The run page's traffic: the page, its event stream (timed to the snapshot), the data report; again
    after 5-15 s."""
    rng = random.Random(seed)
    api = f"/api/v1/runs/{run_id}"
    time.sleep(rng.uniform(0, STAY_S[0]))  # people arrive one by one, not all in the same millisecond
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < until:
            tally.timed("page", lambda: http.get(f"/workspaces/{workspace}/runs/{run_id}"))
            leave = min(until, time.monotonic() + rng.uniform(*STAY_S))
            try:
                visit(http, api, leave, tally)
            except httpx.HTTPError as exc:  # a stream silent for 30 s times out too
                tally.error(f"{type(exc).__name__} events")


def visit(http: httpx.Client, api: str, leave: float, tally: Tally) -> None:
    started = time.perf_counter()
    with http.stream("GET", f"{api}/events") as response:
        if response.status_code != 200:
            tally.error(f"{response.status_code} events")
            return
        stream = events(response)
        snapshot = next(stream, None)
        if snapshot is None or snapshot.kind != "snapshot":
            tally.error(f"events began with {snapshot}")
            return
        with tally.lock:
            tally.latencies.append(("snapshot", time.perf_counter() - started))
        tally.timed("data report", lambda: http.get(f"{api}/artifacts/data_report.json"))
        follow(stream, snapshot.id, leave, tally)


def follow(stream: Iterator[Event], last_id: int, leave: float, tally: Tally) -> None:
    """Read events until `leave`: ids must follow each other; each stored change's delay is kept."""
    for event in stream:
        received = utcnow()
        if event.id != last_id + 1:
            tally.error(f"event {event.id} after {last_id}")
        last_id = event.id
        stamps = [at(item["at"]) for item in event.data] if event.kind in ("status", "metrics", "log") else []
        with tally.lock:
            tally.events += 1
            tally.delays += [(received - stamp).total_seconds() for stamp in stamps]
        if event.kind == "end":
            tally.error("the stream ended while the run trains")
        if time.monotonic() >= leave:
            return
    tally.error("the stream closed while the run trains")


def polling_client(url: str, run_id: str, until: float, tally: Tally) -> None:
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < until:
            for what, path in (("run", f"/api/v1/runs/{run_id}"), ("metrics", f"/api/v1/runs/{run_id}/metrics")):
                tally.timed(what, lambda path=path: http.get(path))
            time.sleep(POLL_S)


def clients(target: Callable[..., None], args: list[tuple]) -> None:
    threads = [threading.Thread(target=target, args=a) for a in args]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class Training:
    """Both runs' training throughput over windows of time, from the store."""

    url: str
    run_ids: list[str]
    images: dict[str, int] = field(default_factory=dict)  # run -> training images per epoch

    def epochs_ended(self, run_id: str) -> list[dt.datetime]:
        points = httpx.get(f"{self.url}/api/v1/runs/{run_id}/metrics/val_accuracy", timeout=60).json()
        return sorted(at(p["at"]) for p in points)

    def longest_epoch_s(self) -> float:
        """The longest time between two epoch ends so far, over both runs."""
        gaps = []
        for run_id in self.run_ids:
            ends = self.epochs_ended(run_id)
            gaps += [(b - a).total_seconds() for a, b in zip(ends, ends[1:], strict=False)]
        return max(gaps)

    def images_per_s(self, windows: list[tuple[dt.datetime, dt.datetime]]) -> float:
        """Images trained per second by both runs together over `windows`, between epoch ends inside each."""
        total = 0.0
        for run_id in self.run_ids:
            ends = self.epochs_ended(run_id)
            epochs = seconds = 0.0
            for start, stop in windows:
                inside = [t for t in ends if start <= t <= stop]
                if len(inside) >= 2:
                    epochs += len(inside) - 1
                    seconds += (inside[-1] - inside[0]).total_seconds()
            assert seconds > 0, f"{run_id} ended fewer than two epochs in a phase"
            total += epochs * self.images[run_id] / seconds
        return total


def host_share_compute(url: str) -> tuple[str, int, int]:
    """A compute whose size has half this host's usable cores (at least one), its vCPUs, and how many runs
    on it fill the CPU: two, or one on a host of one usable core."""
    sizes = httpx.get(f"{url}/api/v1/sizes", timeout=30).json()
    host = sizes[-1]["vcpus"]  # `auto`, this host (the cores this process may use), is last
    runs = min(2, host)
    fitting = sorted((s for s in sizes[:-1] if not s["gpus"] and s["vcpus"] <= max(1, host // runs)),
                     key=lambda s: -s["vcpus"])
    for size in fitting:
        made = httpx.post(f"{url}/api/v1/workspaces/default/computes", json={"name": "drill", "size": size["name"]},
                          timeout=30).json()
        if made["state"] == "Succeeded":
            return "drill", size["vcpus"], runs
        httpx.delete(f"{url}/api/v1/workspaces/default/computes/drill", timeout=30)
    raise AssertionError(f"no size of at most {max(1, host // runs)} vCPUs fits this host: {sizes}")


def phase(loads: list[float], seconds: float, run: Callable[[float], None] | None = None
          ) -> tuple[dt.datetime, dt.datetime]:
    """Run `run(until)` (clients) or nothing for `seconds`; keep the host's load average at the end
    (other work on the machine slows the server and the training alike)."""
    start = utcnow()
    until = time.monotonic() + seconds
    if run is not None:
        run(until)
    time.sleep(max(0.0, until - time.monotonic()))
    loads.append(os.getloadavg()[0])
    return start, utcnow()


def test_fifty_clients_on_the_pages_of_two_training_runs(home: Path, tmp_path: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    data = make_image_folder(tmp_path / "pets", per_label=250, size=160)
    server = Server(home).start()
    started: list[psutil.Process] = []
    try:
        assert httpx.post(f"{server.url}/api/v1/workspaces", json={"name": "default"}, timeout=30).status_code == 201
        compute, threads, runs_at_once = host_share_compute(server.url)
        run_ids = []
        for seed in range(runs_at_once):
            body = {"experiment": "pets", "compute": compute, "recipe": {"data": str(data), "seed": seed, **RECIPE}}
            response = httpx.post(f"{server.url}/api/v1/runs", json=body, timeout=30)
            assert response.status_code == 201, response.text
            run_ids.append(response.json()["id"])
        training = Training(server.url, run_ids)
        # The warm-up (decode, 3 epochs of two runs sharing the CPU) takes as long as the machine needs: the
        # guard is against a hung run, so it fails only when neither run moves (status, phase, step) for
        # STALL_S. A total deadline (600 s, then 1800 s) expired on one busy core while both runs trained.
        moved, last = time.monotonic(), None
        while len(training.images) < runs_at_once or any(len(training.epochs_ended(r)) < 3 for r in run_ids):
            runs = [httpx.get(f"{server.url}/api/v1/runs/{r}", timeout=30).json() for r in run_ids]
            now = [(r["status"], r["progress"]) for r in runs]
            if now != last:
                moved, last = time.monotonic(), now
            assert time.monotonic() - moved < STALL_S, runs
            for run_id in run_ids:
                report = httpx.get(f"{server.url}/api/v1/runs/{run_id}/artifacts/data_report.json", timeout=30)
                if report.status_code == 200:
                    training.images[run_id] = report.json()["train_images"]
            time.sleep(0.5)
        server_process = psutil.Process(server.process.pid)
        started = server_process.children(recursive=True)
        niceness = sorted({p.nice() for p in started if p.ppid() != server_process.pid})

        portal, polling = Tally(), Tally()
        cpu: dict[str, dict[str, float]] = {}

        def measured(name: str, run: Callable[[float], None]) -> tuple[dt.datetime, dt.datetime]:
            """A phase with clients; the CPU the server and the clients (this process, same host) used."""
            server_before, clients_before = server_process.cpu_times(), os.times()
            window = phase(loads, seconds, run)
            server_after, clients_after = server_process.cpu_times(), os.times()
            cpu[name] = {
                "server_cpu_cores": round((server_after.user + server_after.system - server_before.user
                                           - server_before.system) / seconds, 2),
                "clients_cpu_cores": round((clients_after.user + clients_after.system - clients_before.user
                                            - clients_before.system) / seconds, 2)}
            return window

        # Sized from this machine's epochs, not assumed: a quiet phase spans 4 epochs or more, a phase
        # with clients 8, so each holds two epoch ends to measure between on a slow machine too.
        seconds = max(SECONDS, 8 * training.longest_epoch_s())
        loads: list[float] = []
        quiet = [phase(loads, seconds / 2)]
        with_portal = measured("portal", lambda until: clients(portal_client, [
            (server.url, "default", run_ids[k % len(run_ids)], until, portal, k) for k in range(CLIENTS)]))
        quiet.append(phase(loads, seconds / 2))
        with_polling = measured("polling", lambda until: clients(polling_client, [
            (server.url, run_ids[k % len(run_ids)], until, polling) for k in range(CLIENTS)]))
        quiet.append(phase(loads, seconds / 2))

        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{server.url}/api/v1/health", timeout=30).json())["streams"]:
            assert time.monotonic() < deadline, f"streams left open after every client left: {health}"
            time.sleep(0.1)
        statuses = [httpx.get(f"{server.url}/api/v1/runs/{r}", timeout=30).json()["status"] for r in run_ids]
        rates = {"portal": (training.images_per_s(quiet[:2]), training.images_per_s([with_portal])),
                 "polling": (training.images_per_s(quiet[1:]), training.images_per_s([with_polling]))}
    finally:
        server.stop()
        for process in started:  # the workers outlive the server by design: end this test's
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
    assert not portal.errors, portal.errors[:10]
    assert not polling.errors, polling.errors[:10]
    assert statuses == ["Running"] * runs_at_once
    assert niceness, "no worker process seen"
    training_runs = "2 runs" if runs_at_once == 2 else "1 run"
    common = {"clients": CLIENTS, "seconds": round(seconds, 1), "runs": runs_at_once, "threads_per_run": threads,
              "worker_nice": niceness, "host_load_average_max": round(max(loads), 1)}
    for name, tally, case in (
            ("portal", portal, "API: 50 clients on the run page (page, event stream, data report; 5-15 s a "
                               f"visit) while {training_runs} train on every core"),
            ("polling", polling, "API: 50 clients polling a run and its metrics every 0.2 s while "
                                 f"{training_runs} train on every core")):
        quiet_rate, rate = rates[name]
        figures = tally.figures(seconds) | {
            "training_images_per_s_without_clients": round(quiet_rate, 1),
            "training_images_per_s_with_clients": round(rate, 1),
            "training_throughput_kept_pct": round(100 * rate / quiet_rate, 1), **cpu[name]}
        print(f"\n{name}: {figures}")
        record(case, len(tally.latencies), "no errors; every stream closed after its client left" if name == "portal"
               else "no errors", **common, **figures)
