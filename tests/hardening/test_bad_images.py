"""Every case of the bad-image corpus is trained on and predicted on: used correctly, or skipped with
its reason; training never crashes because of one file; prediction on a bad file is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from modelbuilder.results.runtime import InvalidImageError, PredictionEngine
from modelbuilder.training.engine import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.hardening.corpus import make_corpus
from tests.reliability import record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "data"
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    root, _ = corpus
    out = tmp_path_factory.mktemp("run")
    os.environ["MODELBUILDER_HOME"] = str(out / "home")
    try:
        result = run_training(TrainConfig(data=str(root), architecture="tiny", weights="none", image_size=32,
                                          epochs=2, batch_size=8), out, MemoryReporter(), cache_root=out / "cache")
    finally:
        os.environ.pop("MODELBUILDER_HOME", None)
    return result


def test_training_uses_or_skips_every_case_with_its_reason(corpus, trained):
    root, cases = corpus
    report = json.loads((trained.run_dir / "data_report.json").read_text())
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    for name, (rel, fate) in cases.items():
        if fate == "used":
            assert rel not in skipped, f"{name}: skipped ({skipped.get(rel)}) but should be used"
        else:
            assert rel in skipped, f"{name}: not skipped"
            assert fate in skipped[rel], f"{name}: reason {skipped[rel]!r} lacks {fate!r}"
    used = sum(1 for _, fate in cases.values() if fate == "used")
    assert report["train_images"] + report["validation_images"] == 30 + used
    assert report["labels"] == sorted(["cat", "dog house", "café"])
    assert trained.outputs["zip"].is_file()
    record("bad-image corpus: training", len(cases), "every file used or skipped with its reason; training completed",
           skipped=len(skipped), used=used)


def test_prediction_on_every_case(corpus, trained):
    root, cases = corpus
    engine = PredictionEngine.load(trained.outputs["zip"])
    for name, (rel, fate) in cases.items():
        path = root / rel
        # A link out of the data folder is refused for training (it is not the user's data), but
        # predicting on the image a user points at is fine.
        if fate in ("used", "outside the data folder"):
            out = engine.predict(str(path))
            assert out.prediction in engine.labels, name
            assert abs(sum(out.score) - 1.0) < 1e-5
        else:
            with pytest.raises(InvalidImageError) as info:
                engine.predict(str(path))
            assert str(path) in info.value.message, name
            assert info.value.hint, name
    record("bad-image corpus: prediction", len(cases),
           "good files predicted; each bad file a one-line error with a fix")


def test_cli_predict_reports_bad_files_in_one_line(corpus, trained):
    root, cases = corpus
    bad = root / cases["text file named .jpg"][0]
    result = subprocess.run([sys.executable, "-m", "modelbuilder", "predict", str(trained.outputs["zip"]), str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not an image" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    folder = subprocess.run([sys.executable, "-m", "modelbuilder", "predict", str(trained.outputs["zip"]),
                             str(root / "cat"), "--format", "json"], capture_output=True, text=True, timeout=120)
    assert folder.returncode == 0, folder.stderr
    rows = json.loads(folder.stdout)
    errors = {Path(r["image"]).name: r.get("error") for r in rows if r["prediction"] is None}
    assert "empty file" in errors["zero.jpg"]
    assert "truncated" in errors["truncated.jpg"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switches user; as non-root, chmod 000 already applies")
def test_an_unreadable_file_is_skipped_with_permission_denied():
    """Root reads every file, so the data is prepared by a forked child that became the user `nobody`."""
    from modelbuilder.training.engine import prepare_data

    base = Path(tempfile.mkdtemp(prefix="mb-unreadable-"))
    try:
        os.chmod(base, 0o777)
        data = base / "data"
        make_corpus_small(data)
        secret = data / "cat" / "private.png"
        shutil.copy(data / "cat" / "001.png", secret)
        os.chmod(secret, 0o000)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody, prepare the data, send the skipped files back
            code = 1
            try:
                os.close(read_end)
                os.setgid(65534)
                os.setuid(65534)
                prepared = prepare_data(TrainConfig(data=str(data), image_size=32), base / "cache", MemoryReporter())
                os.write(write_end, json.dumps({s.path: s.reason for s in prepared.report.skipped}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            payload = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        skipped = json.loads(payload)
        assert "permission denied" in skipped["cat/private.png"]
        record("unreadable file (permission)", 1, "skipped with 'permission denied'")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def make_corpus_small(root: Path) -> None:
    from tests.imagery import make_image_folder

    make_image_folder(root, per_label=4)
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
