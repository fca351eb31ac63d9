"""Gathering concurrent predictions into batches for onnxruntime (what `modelbuilder serve` runs on).

Callers hand in preprocessed images (`submit`, from any thread) and get a Future of their probabilities.
One thread runs the model: it takes every image already waiting and runs them as one batch. It waits
(up to `max_wait_s`) for more only while the batch is below `max_batch` and more images are on their
way: a server `announce`s each request when it starts decoding its image, so a request that is alone
never waits at all. While a batch runs, new requests queue up and form the next one, so under load
batches fill by themselves. `max_batch=1` answers one request at a time (the baseline a benchmark
compares with).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future

import numpy as np

from modelbuilder.results.runtime import PredictionEngine

MAX_BATCH = 32
MAX_WAIT_S = 0.002
_STOP = object()
_WAKE = object()  # an announced image will not come: a waiting batch looks again


class Batcher:
    def __init__(self, engine: PredictionEngine, *, max_batch: int = MAX_BATCH, max_wait_s: float = MAX_WAIT_S,
                 start: bool = True) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch} and {max_wait_s}.")
        self.engine, self.max_batch, self.max_wait_s = engine, max_batch, max_wait_s
        self.batch_sizes: Counter[int] = Counter()  # how many batches of each size ran
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._incoming = 0  # announced, not yet submitted (or withdrawn)
        self._incoming_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._started = False
        if start:
            self.start()

    def start(self) -> None:
        """Start the model's thread (a Batcher made with start=False queues requests until then)."""
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return self._queue.qsize()

    def announce(self) -> None:
        """An image is on its way (being decoded): a batch may wait for it. Follow with `submit` or `withdraw`."""
        with self._incoming_lock:
            self._incoming += 1

    def withdraw(self) -> None:
        """An announced image will not come (it could not be decoded)."""
        self._arrived()
        self._queue.put(_WAKE)

    def _arrived(self) -> None:
        with self._incoming_lock:
            self._incoming = max(0, self._incoming - 1)

    def submit(self, image: np.ndarray, *, announced: bool = False) -> Future[np.ndarray]:
        """The probabilities of one preprocessed image (HxWx3 uint8), once its batch has run."""
        future: Future[np.ndarray] = Future()
        if announced:
            self._arrived()
        self._queue.put((image, future))
        return future

    def close(self) -> None:
        """Stop after the requests already queued."""
        self._queue.put(_STOP)
        if self._started:
            self._thread.join()

    def _gather(self) -> tuple[list[tuple[np.ndarray, Future[np.ndarray]]], bool]:
        first = self._queue.get()
        while first is _WAKE:
            first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or self._incoming == 0:  # nothing more on its way: run what there is
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True  # type: ignore[return-value]
            if item is not _WAKE:
                batch.append(item)
        return batch, False  # type: ignore[return-value]

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._gather()
            if not batch:
                continue
            live = [(image, future) for image, future in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue
            self.batch_sizes[len(live)] += 1
            try:
                probs = self.engine.predict_proba(np.stack([image for image, _ in live]))
            except Exception as exc:  # a bad batch fails its own requests, never the thread
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), p in zip(live, probs, strict=True):
                future.set_result(p)
