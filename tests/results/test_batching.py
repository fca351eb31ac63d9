"""The Batcher (results/batching.py) with a real model: requests waiting together run as one batch (up
to the cap), each gets its own image's probabilities, `max_batch=1` runs them one at a time, and a
failing batch fails only its own requests. Requests are queued before the model's thread starts, so
what forms a batch never depends on the machine's speed."""

from __future__ import annotations

import numpy as np
import pytest

from modelbuilder.results import runtime
from modelbuilder.results.batching import Batcher


def _crops(engine: runtime.PredictionEngine, dataset) -> list[np.ndarray]:
    return [runtime.preprocess(path, engine.preprocess) for path, _ in dataset[:10]]


def test_waiting_requests_run_as_batches_up_to_the_cap(engine: runtime.PredictionEngine, dataset):
    crops = _crops(engine, dataset)
    batcher = Batcher(engine, max_batch=4, max_wait_s=0.0, start=False)
    futures = [batcher.submit(crop) for crop in crops]
    assert batcher.waiting == 10
    batcher.start()
    answers = [f.result(timeout=60) for f in futures]
    batcher.close()
    assert batcher.batch_sizes == {4: 2, 2: 1}
    expected = engine.predict_proba(np.stack(crops))
    for answer, want in zip(answers, expected, strict=True):
        assert answer == pytest.approx(want, abs=1e-6)


def test_max_batch_one_answers_one_at_a_time(engine: runtime.PredictionEngine, dataset):
    crops = _crops(engine, dataset)[:5]
    batcher = Batcher(engine, max_batch=1, max_wait_s=0.05, start=False)
    futures = [batcher.submit(crop) for crop in crops]
    batcher.start()
    assert [int(f.result(timeout=60).argmax()) for f in futures] == [
        int(p.argmax()) for p in engine.predict_proba(np.stack(crops))]
    batcher.close()
    assert batcher.batch_sizes == {1: 5}


def test_a_failing_batch_fails_only_its_requests(engine: runtime.PredictionEngine, dataset):
    crops = _crops(engine, dataset)[:2]
    batcher = Batcher(engine, max_batch=1, start=False)
    bad = batcher.submit(np.zeros((5, 5), np.uint8))  # not an RGB image
    good = [batcher.submit(crop) for crop in crops]
    batcher.start()
    with pytest.raises(ValueError, match="NHWC uint8"):
        bad.result(timeout=60)
    assert all(f.result(timeout=60).shape == (len(engine.labels),) for f in good)
    batcher.close()


def test_bad_settings_are_refused(engine: runtime.PredictionEngine):
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        Batcher(engine, max_batch=0, start=False)
    with pytest.raises(ValueError, match="max_wait_s >= 0"):
        Batcher(engine, max_wait_s=-1, start=False)


def test_a_batch_waits_only_for_announced_images(engine: runtime.PredictionEngine, dataset):
    """Announced images are waited for (however long the other takes to arrive, within max_wait_s); a
    withdrawn one stops the wait at once; without announcements a request never waits."""
    crops = _crops(engine, dataset)[:3]
    batcher = Batcher(engine, max_batch=4, max_wait_s=600)
    batcher.announce()
    batcher.announce()
    first = batcher.submit(crops[0], announced=True)
    assert not first.done()  # waits for the second announced image
    second = batcher.submit(crops[1], announced=True)
    first.result(timeout=60)
    second.result(timeout=60)
    assert dict(batcher.batch_sizes) == {2: 1}

    batcher.announce()
    batcher.announce()
    alone = batcher.submit(crops[2], announced=True)
    batcher.withdraw()  # the other could not be decoded: the batch runs now, not after 600 s
    alone.result(timeout=60)
    assert batcher.submit(crops[0]).result(timeout=60).shape == (len(engine.labels),)  # nothing announced
    batcher.close()
    assert dict(batcher.batch_sizes) == {2: 1, 1: 2}
