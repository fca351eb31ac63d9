"""The main job end to end with the real default model: ResNet50, 2 epochs at 32 px, every output checked."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from modelbuilder.results.runtime import PredictionEngine, center_crop, preprocess, to_model_input
from modelbuilder.training.engine import run_training
from modelbuilder.training.model import build_model
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.imagery import make_image_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = make_image_folder(root / "pets", per_label=12, labels=("cat", "dog", "fox"), size=40, odd_files=True)
    reporter = MemoryReporter()
    out = run_training(TrainConfig(data=str(data), epochs=2, image_size=32, weights="none", batch_size=8,
                                   name="PetClassifier"), root / "run", reporter, cache_root=root / "cache",
                       offline=True)
    return out, data, reporter


def test_every_output_is_there_and_consistent(result):
    out, _, reporter = result
    run_dir = out.run_dir
    assert out.metrics["architecture"] == "resnet50"
    for name in ("bestModel.onnx", "bestModelMap.json", "MLModel.zip", "metrics.json", "data_report.json",
                 "recipe.json", "confusion_matrix.png", "training_curves.png", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (run_dir / name).is_file(), name
    labels = json.loads((run_dir / "bestModelMap.json").read_text())
    assert labels == ["cat", "dog", "fox"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "macro_accuracy", "macro_precision", "macro_recall", "macro_f1", "log_loss",
                "per_label", "confusion_matrix", "history", "export_check"):
        assert key in metrics, key
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["num_images"]
    assert metrics["export_check"]["top1_agreement"] == 1.0
    assert metrics["export_check"]["max_abs_prob_diff"] < 1e-4
    for png in ("confusion_matrix.png", "training_curves.png"):
        assert Image.open(run_dir / png).size[0] > 100
    with zipfile.ZipFile(run_dir / "MLModel.zip") as package:
        assert set(package.namelist()) == {"pipeline.json", "bestModel.onnx", "bestModelMap.json"}
        pipeline = json.loads(package.read("pipeline.json"))
    assert pipeline["format"] == "modelbuilder.pipeline/1"
    assert pipeline["labels"] == labels
    assert pipeline["preprocess"]["crop"] == 32
    graph = onnx.load(str(run_dir / "bestModel.onnx")).graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param, "the batch dimension must be dynamic"
    assert any(level == "warning" and "Skipped" in message for level, message in reporter.logs)


def test_prediction_matches_training_preprocessing_and_the_torch_model(result):
    out, data, _ = result
    engine = PredictionEngine.load(out.outputs["zip"])
    model, _ = build_model("resnet50", 3, "none")
    model.load_state_dict(torch.load(out.run_dir / "checkpoints" / "best.pt", weights_only=False)["model"])
    model.eval()
    files = sorted((data / "dog").glob("0*"))[:6] + [data / "cat" / "cmyk.jpg", data / "cat" / "rotated.jpg"]
    spec = engine.preprocess
    from modelbuilder.results.runtime import load_image, square_image

    worst = 0.0
    for path in files:
        # training's eval transform: the decoded cache's square, center-cropped, scaled to [0, 1]
        trained_view = center_crop(square_image(load_image(path, draft_size=spec.resize), spec.resize), spec.crop)
        runtime_view = preprocess(str(path), spec)
        worst = max(worst, float(np.abs(trained_view.astype(float) - runtime_view.astype(float)).max()))
        x = torch.from_numpy(to_model_input(runtime_view[None]))
        with torch.no_grad():
            expected = torch.softmax(model(x), 1)[0].numpy()
        got = engine.predict(str(path))
        assert got.prediction == engine.labels[int(expected.argmax())]
        assert np.abs(np.array(got.score) - expected).max() < 1e-4
    assert worst == 0.0


def test_generated_projects_predict_and_are_lint_clean(result):
    out, _, _ = result
    app = subprocess.run([sys.executable, str(out.outputs["console_app"] / "main.py")], capture_output=True,
                         text=True, timeout=120)
    assert app.returncode == 0, app.stderr
    assert "Predicted label:" in app.stdout
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(out.outputs["console_app"]),
                           str(out.outputs["model"])], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout
