"""The server under faults: killed -9 while runs train and write (its load drill is test_server_load.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.liveserver import Server
from tests.reliability import record

pytestmark = pytest.mark.slow


def _submit(url: str, data: Path, seed: int, epochs: int = 6, patience: int = 100) -> str:
    recipe = {"data": str(data), "architecture": "tiny", "weights": "none", "image_size": 32, "epochs": epochs,
              "batch_size": 4, "seed": seed, "early_stopping_patience": patience, "name": "Tiny"}
    response = httpx.post(f"{url}/api/v1/runs", json={"experiment": "pets", "recipe": recipe}, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _run(url: str, run_id: str) -> dict:
    return httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=30).json()


def _wait_all_ended(url: str, run_ids: list[str], timeout: float = 400) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [_run(url, run_id) for run_id in run_ids]
        if all(run["status"] in ("Completed", "Failed", "Canceled") for run in runs):
            return runs
        time.sleep(0.5)
    raise AssertionError(f"runs did not end: {[(r['id'], r['status']) for r in runs]}")


def test_server_killed_during_writes_restarts_cleanly_and_every_run_completes(home, holds, tmp_path):
    from tests.imagery import make_image_folder

    home.mkdir(parents=True, exist_ok=True)
    data = make_image_folder(tmp_path / "pets", per_label=12)
    holds.at("training 2 1")  # the first run is training when the server dies, on any machine
    server = Server(home).start()
    try:
        run_ids = [_submit(server.url, data, seed) for seed in range(3)]
        deadline = time.monotonic() + 240
        while holds.held(run_ids[0]) is None:
            assert _run(server.url, run_ids[0])["status"] in ("Queued", "Preparing", "Running")
            assert time.monotonic() < deadline, "the first run was not held in training within 240 s"
            time.sleep(0.05)
        stop_writing = threading.Event()

        def keep_writing() -> None:  # the API writes too (submissions) while the server dies
            seed = 100
            while not stop_writing.is_set():
                try:
                    _submit(server.url, data, seed, epochs=1)
                    seed += 1
                    stop_writing.wait(0.15)  # a steady stream, not a flood of runs to finish afterwards
                except (httpx.TransportError, AssertionError):
                    return

        writer = threading.Thread(target=keep_writing, daemon=True)
        writer.start()
        time.sleep(1.0)
        server.kill()  # kill -9 in the middle of writes
        stop_writing.set()
        writer.join(10)
        check = sqlite3.connect(home / "modelbuilder.db")
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        submitted = check.execute("SELECT count(*) FROM runs").fetchone()[0]
        check.close()
        server = Server(home).start()
        listed = httpx.get(f"{server.url}/api/v1/runs", params={"limit": 500}, timeout=30).json()
        items = listed["items"] if isinstance(listed, dict) else listed
        assert len(items) == submitted  # no run lost
        holds.release(*(item["id"] for item in items))
        ended = _wait_all_ended(server.url, [item["id"] for item in items])
        problems = [(r["id"], r["status"], r.get("error")) for r in ended if r["status"] != "Completed"]
        assert not problems
    finally:
        server.stop()
    record("kill -9 of the server during writes, then restart", 1,
           f"store integrity ok; all {submitted} runs present and Completed", runs_in_flight=3,
           runs_submitted=submitted)
