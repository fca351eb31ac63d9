"""MLModel.zip written by `pipeline`, read by `PredictionEngine`, and checked against PyTorch."""

from __future__ import annotations

import json
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelbuilder.errors import InvalidInput
from modelbuilder.results.pipeline import write_label_map, write_model_package
from modelbuilder.results.runtime import (
    FORMAT,
    InvalidImageError,
    InvalidModelPackageError,
    ModelInput,
    ModelOutput,
    PredictionEngine,
)

from .helpers import LABELS, METRICS, PYTHON, SPEC, subprocess_env


def test_package_members_and_pipeline_json(mlmodel_zip: Path):
    with zipfile.ZipFile(mlmodel_zip) as archive:
        assert sorted(archive.namelist()) == ["bestModel.onnx", "bestModelMap.json", "pipeline.json"]
        pipeline = json.loads(archive.read("pipeline.json"))
        assert json.loads(archive.read("bestModelMap.json")) == LABELS
    assert pipeline["format"] == FORMAT == "modelbuilder.pipeline/1"
    assert pipeline["task"] == "image-classification"
    assert pipeline["input"] == {"name": "image", "layout": "NCHW", "dtype": "float32", "range": [0, 1]}
    assert pipeline["preprocess"] == SPEC.to_dict()
    assert pipeline["output"] == {"name": "logits", "kind": "logits"}
    assert pipeline["labels"] == LABELS
    assert pipeline["created"].endswith("+00:00")
    assert pipeline["metrics"]["macro_f1"] == pytest.approx(0.9)  # numpy float32 stored as a number


def test_engine_reads_back_labels_spec_and_metrics(engine: PredictionEngine):
    assert engine.labels == LABELS
    assert engine.preprocess == SPEC
    assert engine.input_name == "image"
    assert engine.output_name == "logits"
    assert engine.metrics["accuracy"] == METRICS["accuracy"]
    assert engine.metrics["per_label"] == {"cat": 1.0}
    assert "CPUExecutionProvider" in engine.providers


def test_engine_loads_from_a_folder(mlmodel_zip: Path, tmp_path: Path, engine: PredictionEngine, dataset):
    with zipfile.ZipFile(mlmodel_zip) as archive:
        archive.extractall(tmp_path)
    from_folder = PredictionEngine.load(tmp_path)
    path = dataset[0][0]
    assert from_folder.predict(path) == engine.predict(path)


def test_predictions_match_torch(engine: PredictionEngine, dataset, torch_probs):
    paths = [path for path, _ in dataset]
    expected = torch_probs(paths)
    outputs = [engine.predict(ModelInput(image_source=str(path))) for path in paths]
    probs = np.array([output.score for output in outputs])
    assert np.abs(probs - expected).max() < 1e-4
    assert [o.prediction for o in outputs] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert len({o.prediction for o in outputs}) > 1  # the tiny model really tells images apart
    for output in outputs:
        assert isinstance(output, ModelOutput)
        assert isinstance(output.score[0], float)
        assert sum(output.score) == pytest.approx(1.0, abs=1e-9)
        assert output.prediction == LABELS[int(np.argmax(output.score))]


def test_predict_batch_equals_one_by_one(engine: PredictionEngine, dataset):
    sources = [ModelInput(image_source=str(path), label=label) for path, label in dataset]
    sources.append(np.asarray(Image.open(dataset[0][0]).convert("RGB")))  # raw sources mix in
    one_by_one = [engine.predict(source) for source in sources]
    batched = engine.predict_batch(sources, batch_size=5)
    assert [o.prediction for o in batched] == [o.prediction for o in one_by_one]
    assert np.abs(np.array([o.score for o in batched]) - np.array([o.score for o in one_by_one])).max() < 1e-6
    assert engine.predict_batch([]) == []


def test_concurrent_predictions_agree(engine: PredictionEngine, dataset):
    paths = [str(path) for path, _ in dataset] * 3
    expected = [engine.predict(path).prediction for path in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert [o.prediction for o in pool.map(engine.predict, paths)] == expected


def test_bad_image_in_predict_names_the_file(engine: PredictionEngine, images):
    with pytest.raises(InvalidImageError, match="text.jpg"):
        engine.predict(ModelInput(image_source=str(images["text.jpg"])))


def test_predict_proba_checks_its_batch(engine: PredictionEngine):
    with pytest.raises(ValueError, match="NHWC uint8"):
        engine.predict_proba(np.zeros((1, 3, 28, 28), np.float32))


def _rezip(source: Path, target: Path, drop: str = "", replace: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            if name != drop:
                new.writestr(name, (replace or {}).get(name, old.read(name)))
    return target


def _pipeline(mlmodel_zip: Path, **changes) -> str:
    with zipfile.ZipFile(mlmodel_zip) as archive:
        return json.dumps({**json.loads(archive.read("pipeline.json")), **changes})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "pipeline.json"}, "has no pipeline.json"),
        ({"drop": "bestModel.onnx"}, "has no bestModel.onnx"),
        ({"pipeline": {"format": "modelbuilder.pipeline/9"}}, "has format 'modelbuilder.pipeline/9'"),
        ({"pipeline": {"format": None}}, "has format None"),
        ({"pipeline": {"labels": ["a", "b", "c"]}}, "disagree on labels"),
        ({"pipeline": {"input": {"name": "pixels"}}}, "not 'pixels' -> 'logits'"),
        ({"map": ["a", "b"]}, "outputs 3 scores for 2 labels"),
        ({"onnx": b"not a model"}, "cannot be loaded by onnxruntime"),
    ],
)
def test_broken_packages_give_a_clear_error(mlmodel_zip: Path, tmp_path: Path, change, message):
    replace = {}
    if "pipeline" in change:
        replace["pipeline.json"] = _pipeline(mlmodel_zip, **change["pipeline"])
    if "map" in change:
        replace["bestModelMap.json"] = json.dumps(change["map"])
        replace["pipeline.json"] = _pipeline(mlmodel_zip, labels=change["map"])
    if "onnx" in change:
        replace["bestModel.onnx"] = change["onnx"]
    broken = _rezip(mlmodel_zip, tmp_path / "broken.zip", change.get("drop", ""), replace)
    with pytest.raises(InvalidModelPackageError) as caught:
        PredictionEngine.load(broken)
    assert message in str(caught.value)
    assert "Fix: " in str(caught.value)
    assert "\n" not in str(caught.value)


def test_not_a_zip_and_missing_package(tmp_path: Path, images):
    with pytest.raises(InvalidModelPackageError, match="not a readable zip"):
        PredictionEngine.load(images["text.jpg"])
    with pytest.raises(InvalidModelPackageError, match="does not exist"):
        PredictionEngine.load(tmp_path / "nowhere.zip")


def test_write_model_package_refuses_bad_arguments(onnx_model: Path, tmp_path: Path):
    target = tmp_path / "MLModel.zip"
    with pytest.raises(InvalidInput, match="appear more than once"):
        write_model_package(target, onnx_model, ["a", "a", "b"], SPEC, {}, "image", "logits")
    with pytest.raises(InvalidInput, match="at least 2"):
        write_model_package(target, onnx_model, ["a"], SPEC, {}, "image", "logits")
    with pytest.raises(InvalidInput, match="outputs 3 scores for 2 labels"):
        write_model_package(target, onnx_model, ["a", "b"], SPEC, {}, "image", "logits")
    with pytest.raises(InvalidInput, match="not 'input' -> 'logits'"):
        write_model_package(target, onnx_model, LABELS, SPEC, {}, "input", "logits")
    with pytest.raises(InvalidInput, match="does not exist"):
        write_model_package(target, tmp_path / "missing.onnx", LABELS, SPEC, {}, "image", "logits")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_write_label_map(tmp_path: Path):
    path = write_label_map(tmp_path / "bestModelMap.json", ["chat", "chien", "poisson rouge"])
    assert json.loads(path.read_text()) == ["chat", "chien", "poisson rouge"]
    assert [p.name for p in tmp_path.iterdir()] == ["bestModelMap.json"]


def test_runtime_never_imports_torch(mlmodel_zip: Path, dataset, engine: PredictionEngine):
    script = (
        "import sys\n"
        "import modelbuilder.results.runtime as rt\n"
        f"engine = rt.PredictionEngine.load({str(mlmodel_zip)!r})\n"
        f"out = engine.predict(rt.ModelInput({str(dataset[0][0])!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(out.prediction)\n"
    )
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == engine.predict(dataset[0][0]).prediction
