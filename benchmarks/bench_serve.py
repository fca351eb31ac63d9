"""Requests per second and latency of `modelbuilder serve`: batching against one request at a time.

The same server is started twice on loopback, as a user would start it: once batching (--max-batch,
default 32, waiting up to --max-wait-ms for more) and once answering one request at a time
(--max-batch 1). Each faces 1, 8 and 32 concurrent clients (--clients); every client is a thread with
its own HTTP connection that posts real image files (raw bytes, Content-Type image/*) one after another.
Each level sends --requests requests (at least 4 per client) after a warm-up; requests per second is
requests / wall time, latency is each request's own round trip (p50, p95). The clients run on the same
machine as the server, so on a small machine they take part of its CPU, alike for both sides.

The model is --model (an MLModel.zip), or a quick one trained first on --data (default: the
hymenoptera photos in ../shared/datasets, else the digits demo set). Before serving, the model is timed
by itself on decoded images at batch 1 and at --max-batch: what it gains from larger batches is the most
a batching server can add on this machine (a CNN that already keeps every core busy at batch 1 gains
little on a CPU; a GPU gains much more). The last line printed is one JSON object; `target_met` is the
issue's target read literally: at 32 clients at least 2x the requests per second of one at a time, with
a batched p95 at 32 clients no worse than 2x the one-at-a-time p50 at 1 client. With closed-loop clients
the second half asks for more than 16x the throughput (Little's law: latency = clients / throughput), so
the JSON also gives the lone client's reading: batched p95 at 1 client over one-at-a-time p50 at 1 client.

    python benchmarks/bench_serve.py [--model MLModel.zip] [--data DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402 - the shared helpers sit beside this script

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
               ".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp"}


def quick_model(args: argparse.Namespace, data: _common.Dataset, work: Path) -> Path:
    from modelbuilder.results.files import ZIP_FILE
    from modelbuilder.training.engine import run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    size = args.image_size or ((64 if args.quick else 224) if data.photos else 32)
    recipe = TrainConfig(data=str(data.train), validation_data=str(data.val), architecture=args.architecture,
                         weights="none", image_size=size, epochs=1, seed=0)
    _common.log(f"bench_serve: training a {args.architecture} model at {size} px on {data.name} first ...")
    run_training(recipe, work / "run", MemoryReporter(), cache_root=work / "cache", offline=True)
    return work / "run" / ZIP_FILE


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """`python -m modelbuilder serve MODEL --max-batch N` in a subprocess, stopped on leaving."""

    def __init__(self, model: Path, max_batch: int, max_wait_ms: float, home: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **_common.child_env(home)}
        env.pop("MODELBUILDER_TOKEN", None)  # a token in the caller's shell would make /predict answer 401
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelbuilder", "serve", str(model), "--port", str(self.port), "--max-batch",
             str(max_batch), "--max-wait-ms", str(max_wait_ms)], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                said = self.process.stderr.read() if self.process.stderr else ""
                raise SystemExit(f"error: the server exited: {said}")
            try:
                httpx.get(f"{self.url}/health", timeout=5).raise_for_status()
                return self
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("error: the server did not answer within 120 s.") from None
                time.sleep(0.2)

    def __exit__(self, *_exc: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def load(url: str, bodies: list[tuple[bytes, str]], clients: int, requests: int) -> dict[str, float]:
    """`requests` posts from `clients` threads, each on its own connection; rps and latency percentiles."""
    per_client = max(4, requests // clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            start.wait()
            for i in range(per_client):
                data, kind = bodies[(k * per_client + i) % len(bodies)]
                t0 = time.perf_counter()
                answer = http.post("/predict", content=data, headers={"content-type": kind})
                latencies[k].append(time.perf_counter() - t0)
                if answer.status_code != 200:
                    failures.append(answer.text[:200])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if failures:
        raise SystemExit(f"error: {len(failures)} requests failed, for example: {failures[0]}")
    every = sorted(x for per in latencies for x in per)
    cut = statistics.quantiles(every, n=100, method="inclusive")
    return {"rps": len(every) / wall, "p50_ms": statistics.median(every) * 1000, "p95_ms": cut[94] * 1000,
            "requests": len(every)}


def measure(model: Path, images: list[Path], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bodies = [(p.read_bytes(), IMAGE_TYPES.get(p.suffix.lower(), "application/octet-stream")) for p in images]
    levels = [int(c) for c in args.clients.split(",")]
    results: dict[str, Any] = {}
    for side, max_batch in (("batched", args.max_batch), ("one_at_a_time", 1)):
        with Served(model, max_batch, args.max_wait_ms, work / f"home-{side}") as served:
            load(served.url, bodies, 2, 8)  # warm-up: sessions, threads, first batches
            for clients in levels:
                results[f"{side}_{clients}"] = r = load(served.url, bodies, clients, args.requests)
                _common.log(f"bench_serve: {side}, {clients} client(s): {r['rps']:.1f} requests/s, "
                            f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms ({r['requests']} requests)")
            results[f"{side}_batches"] = httpx.get(f"{served.url}/health", timeout=30).json()["batches"]
    return results


def model_alone(model: Path, images: list[Path], max_batch: int) -> dict[str, float]:
    """Images per second of the model by itself (decoded images, no HTTP) at batch 1 and at `max_batch`:
    the most batching can add to a server is what the model itself gains from larger batches."""
    from modelbuilder.results.runtime import PredictionEngine, preprocess

    engine = PredictionEngine.load(model)
    decoded = np.stack([preprocess(images[k % len(images)].read_bytes(), engine.preprocess)
                        for k in range(max_batch)])  # the images again where fewer than a batch
    rates: dict[str, float] = {}
    for size in (1, max_batch):
        batch = decoded[:size]
        engine.predict_proba(batch)  # warm-up
        rounds = max(2, 64 // size)
        began = time.perf_counter()
        for _ in range(rounds):
            engine.predict_proba(batch)
        rates[f"model_images_per_s_batch_{size}"] = round(size * rounds / (time.perf_counter() - began), 1)
    return rates


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="an MLModel.zip to serve (default: train a quick model on --data first)")
    p.add_argument("--data", help="images to send (and to train the quick model on); default: hymenoptera, "
                   "else the digits demo set")
    p.add_argument("--architecture", default="resnet50", help="of the quick model (default resnet50)")
    p.add_argument("--image-size", type=int, help="of the quick model (default 224 for photos; --quick: 64)")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per level (default 1,8,32)")
    p.add_argument("--requests", type=int, default=256, help="requests per level (default 256)")
    p.add_argument("--max-batch", type=int, default=32, help="the batching server's cap (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="its wait for more requests (default 2)")
    p.add_argument("--quick", action="store_true", help="a quick model at 64 px")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        data = _common.resolve_data(args.data, work)
        model = Path(args.model) if args.model else quick_model(args, data, work)
        images = sorted(p for p in data.val.rglob("*") if p.suffix.lower() in IMAGE_TYPES)
        if not images:
            raise SystemExit(f"error: no images in {data.val}. Fix: pass --data with images in label folders.")
        alone = model_alone(model, images, args.max_batch)
        r = measure(model, images, args, work)
    levels = [int(c) for c in args.clients.split(",")]
    top, one = max(levels), min(levels)
    ratio = r[f"batched_{top}"]["rps"] / r[f"one_at_a_time_{top}"]["rps"]
    p95_over = r[f"batched_{top}"]["p95_ms"] / r[f"one_at_a_time_{one}"]["p50_ms"]
    print(f"machine: {_common.machine()}; {len(images)} images of {data.name}; model {model.name}")
    for clients in levels:
        b, u = r[f"batched_{clients}"], r[f"one_at_a_time_{clients}"]
        print(f"{clients:>3} client(s): batched {b['rps']:.1f} req/s (p50 {b['p50_ms']:.1f} ms, "
              f"p95 {b['p95_ms']:.1f} ms); one at a time {u['rps']:.1f} req/s (p50 {u['p50_ms']:.1f} ms, "
              f"p95 {u['p95_ms']:.1f} ms)")
    print(f"batches run by the batching server (size: count): {r['batched_batches']}")
    low, high = alone["model_images_per_s_batch_1"], alone[f"model_images_per_s_batch_{args.max_batch}"]
    print(f"the model alone (no HTTP, decoded images): {low:.1f} images/s at batch 1, {high:.1f} at batch "
          f"{args.max_batch}: a gain of {high / low:.2f}x, the most batching can add on this machine")
    summary: dict[str, Any] = dict(alone)
    for clients in levels:
        for side in ("batched", "one_at_a_time"):
            values = r[f"{side}_{clients}"]
            summary[f"{side}_rps_{clients}"] = round(values["rps"], 2)
            summary[f"{side}_p50_ms_{clients}"] = round(values["p50_ms"], 2)
            summary[f"{side}_p95_ms_{clients}"] = round(values["p95_ms"], 2)
    summary.update({f"rps_ratio_{top}": round(ratio, 3), f"p95_batched_{top}_over_p50_one_at_a_time_{one}":
                    round(p95_over, 3),
                    f"p95_batched_{one}_over_p50_one_at_a_time_{one}": round(
                        r[f"batched_{one}"]["p95_ms"] / r[f"one_at_a_time_{one}"]["p50_ms"], 3),
                    "target_met": bool(ratio >= 2 and p95_over <= 2)})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
