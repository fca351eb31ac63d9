"""int8 quantization: the int8 model keeps the float model's contract and answers, and `modelbuilder
export` writes it beside a real run's float model with both accuracies side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import INT8_MODEL_FILE, INT8_ZIP_FILE
from modelbuilder.results.quantize import (
    calibration_of,
    evaluate_onnx,
    export_int8,
    predict_logits,
    quantize_int8,
)
from modelbuilder.results.runtime import PredictionEngine, center_crop, make_session, read_model_package, to_model_input
from tests.cli.driver import Cli, Result, in_process
from tests.completed import TrainedRun, make_completed_run
from tests.imagery import make_image_folder

RUN_ID = "run-0123456789ab"
LABELS = ("cat", "dog", "fox")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model really trained by the engine at 32 px, and its validation images as the model sees them."""
    from modelbuilder.training.engine import prepare_data, run_training
    from modelbuilder.training.recipe import TrainConfig
    from modelbuilder.training.reporter import MemoryReporter

    root = tmp_path_factory.mktemp("quantize")
    data = make_image_folder(root / "pets", per_label=16, labels=LABELS)
    recipe = TrainConfig(data=str(data), architecture="tiny", weights="none", image_size=32, epochs=4,
                         batch_size=8, lr=5e-3, seed=1, validation_fraction=0.25)
    result = run_training(recipe, root / "run", MemoryReporter(), cache_root=root / "cache", offline=True)
    prepared = prepare_data(recipe, root / "cache", MemoryReporter())
    crops = np.stack([center_crop(r, 32) for r in prepared.val.cache.read(prepared.val.records)])
    return {"run_dir": result.run_dir, "metrics": result.metrics, "crops": crops, "targets": prepared.val.targets,
            "labels": prepared.labels, "data": data}


def _signature(path: Path) -> tuple:
    model = onnx.load(str(path))
    initializers = {i.name for i in model.graph.initializer}

    def describe(values):
        return [(v.name, v.type.tensor_type.elem_type,
                 [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values if v.name not in initializers]

    return describe(model.graph.input), describe(model.graph.output)


def test_int8_model_keeps_the_contract_and_agrees_with_float(trained, tmp_path):
    float_onnx = trained["run_dir"] / "bestModel.onnx"
    images = to_model_input(trained["crops"])
    int8 = quantize_int8(float_onnx, tmp_path / "int8.onnx", images)

    assert _signature(int8) == _signature(float_onnx)  # same names, float32 in, logits out, dynamic batch
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really quantized, not a copy
    weights = [i for i in onnx.load(str(int8)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert weights, "no int8 weights in the quantized model"

    session = make_session(int8)
    assert session.run(None, {"image": images[:1]})[0].shape == (1, len(LABELS))
    float_top1 = predict_logits(float_onnx, images).argmax(1)
    int8_top1 = predict_logits(session, images).argmax(1)
    assert (float_top1 == int8_top1).mean() >= 0.9


def _activation_scales(path: Path) -> dict[str, float]:
    """The scale of every activation QuantizeLinear (a scalar; weights' per-channel scales are vectors)."""
    model = onnx.load(str(path))
    scalars = {i.name: float(onnx.numpy_helper.to_array(i)) for i in model.graph.initializer
               if not i.dims and i.data_type == onnx.TensorProto.FLOAT}
    return {n.input[0]: scalars[n.input[1]] for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in scalars}


def test_auto_calibration_keeps_the_ranges_that_agree_best_with_float(trained, tmp_path):
    float_onnx = trained["run_dir"] / "bestModel.onnx"
    images = to_model_input(trained["crops"])
    int8 = quantize_int8(float_onnx, tmp_path / "auto.onnx", images)

    chosen, scores = calibration_of(int8)
    assert set(scores) == {"averaged", "extremes"}
    rank = {name: (s["top1_agreement"], -s["mean_abs_prob_diff"]) for name, s in scores.items()}
    assert rank[chosen] == max(rank.values())
    # the file kept is the one that was scored: its agreement with float on these images is the recorded one
    float_top1 = predict_logits(float_onnx, images).argmax(1)
    agreement = (predict_logits(int8, images).argmax(1) == float_top1).mean()
    assert agreement == pytest.approx(scores[chosen]["top1_agreement"])
    assert not list(tmp_path.glob(".quantize-*"))  # the losing candidate is not left behind


def test_one_calibration_batch_is_quantized_once(trained, tmp_path):
    images = to_model_input(trained["crops"])[:8]  # one batch: its averaged ranges are its extremes
    int8 = quantize_int8(trained["run_dir"] / "bestModel.onnx", tmp_path / "one.onnx", images)
    assert calibration_of(int8) == ("extremes", {})


def test_averaged_ranges_are_never_wider_than_the_extremes(trained, tmp_path):
    float_onnx = trained["run_dir"] / "bestModel.onnx"
    images = to_model_input(trained["crops"])
    assert len(images) > 8  # more than one calibration batch, or the two rules coincide
    averaged = quantize_int8(float_onnx, tmp_path / "averaged.onnx", images, calibration="averaged")
    extremes = quantize_int8(float_onnx, tmp_path / "extremes.onnx", images, calibration="extremes")
    assert calibration_of(averaged) == ("averaged", {})
    assert calibration_of(extremes) == ("extremes", {})

    narrow, wide = _activation_scales(averaged), _activation_scales(extremes)
    assert narrow.keys() == wide.keys()
    assert len(narrow) >= 4  # the input and every activation of the net
    assert all(narrow[t] <= wide[t] * (1 + 1e-6) for t in narrow)
    assert any(narrow[t] < wide[t] * 0.99 for t in narrow)  # really different ranges, not one rule twice
    with pytest.raises(InvalidInput, match="auto, averaged or extremes"):
        quantize_int8(float_onnx, tmp_path / "x.onnx", images, calibration="percentile")


def test_evaluate_onnx_matches_the_runs_own_accuracy(trained):
    accuracy = evaluate_onnx(trained["run_dir"] / "bestModel.onnx", to_model_input(trained["crops"]),
                             trained["targets"])
    assert accuracy == pytest.approx(trained["metrics"]["accuracy"])
    with pytest.raises(InvalidInput, match="targets"):
        evaluate_onnx(trained["run_dir"] / "bestModel.onnx", to_model_input(trained["crops"]), trained["targets"][:2])


def test_bad_inputs_are_refused_with_a_fix(trained, tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "out.onnx", np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(InvalidInput, match="N x 3 x H x W"):
        quantize_int8(trained["run_dir"] / "bestModel.onnx", tmp_path / "out.onnx", np.zeros((4, 32, 32, 3)))
    assert not (tmp_path / "out.onnx").exists()


def test_int8_package_loads_in_the_prediction_engine(trained, tmp_path):
    package = read_model_package(trained["run_dir"] / "MLModel.zip")
    result = export_int8(trained["run_dir"] / "bestModel.onnx", tmp_path, trained["crops"], trained["targets"],
                         trained["labels"], package.preprocess, package.pipeline["metrics"], "image", "logits")
    assert result.onnx == tmp_path / INT8_MODEL_FILE
    assert result.package == tmp_path / INT8_ZIP_FILE
    assert result.float_accuracy == pytest.approx(trained["metrics"]["accuracy"])
    assert abs(result.accuracy_delta) <= 0.15

    engine = PredictionEngine.load(result.package)
    assert engine.labels == trained["labels"]
    assert engine.preprocess == package.preprocess
    quantization = engine.metrics["quantization"]
    assert quantization["type"] == "int8"
    assert quantization["calibration"] == f"minmax, {result.calibration}"
    assert set(quantization["calibration_scores"]) == {"averaged", "extremes"}
    assert quantization["float_accuracy"] == result.float_accuracy
    assert engine.metrics["accuracy"] == result.int8_accuracy
    assert engine.metrics["float"]["accuracy"] == package.pipeline["metrics"]["accuracy"]
    image = next((trained["data"] / "dog").glob("*.png"))
    out = engine.predict(str(image))
    assert out.prediction in trained["labels"]
    assert sum(out.score) == pytest.approx(1.0, abs=1e-5)


# --- the command -----------------------------------------------------------------------------------
@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return in_process(capsys, monkeypatch)


@pytest.fixture
def finished_run(trained, home: Path) -> tuple[str, Path]:
    """The trained run, walked through its lifecycle in the store of `home` with these results (as a worker
    would): its id and its folder."""
    with Services() as services:
        run_id = make_completed_run(services, TrainedRun(trained["data"], trained["run_dir"], trained["metrics"]))
        return run_id, services.artifacts.run_dir(run_id)


def _accuracies(result: Result) -> tuple[float, float]:
    row = next(r for r in result.rows() if r[0] == "validation accuracy")
    return float(row[1]), float(row[2])


def test_export_a_run_prints_both_accuracies_and_writes_beside_the_float_model(cli, finished_run, trained):
    run_id, run_dir = finished_run
    result = cli("export", run_id, "--quantize", "int8").ok()
    float_acc, int8_acc = _accuracies(result)
    assert float_acc == pytest.approx(trained["metrics"]["accuracy"], abs=1e-4)  # the same validation images
    assert "as fast" in result.stdout
    ranges = next(line for line in result.stdout.splitlines() if line.startswith("Activation ranges: "))
    assert "averaged" in ranges
    assert "extremes" in ranges
    assert "Quantizing: calibrating on" in result.stdout  # steps are shown (one line each off a terminal)
    assert (run_dir / INT8_MODEL_FILE).is_file()
    pipeline = read_model_package(run_dir / INT8_ZIP_FILE).pipeline
    assert pipeline["metrics"]["quantization"]["validation_images"] == len(trained["targets"])
    assert pipeline["metrics"]["accuracy"] == pytest.approx(int8_acc, abs=1e-4)


def test_export_a_zip_needs_validation_data_and_writes_to_output(cli, trained, home, tmp_path):
    zip_path = trained["run_dir"] / "MLModel.zip"
    cli("export", str(zip_path)).user_error("no validation images", "--validation-data")
    out = tmp_path / "out"
    result = cli("export", str(zip_path), "--validation-data", str(trained["data"]), "--output", str(out)).ok()
    float_acc, int8_acc = _accuracies(result)
    assert 0.0 <= float_acc <= 1.0
    assert 0.0 <= int8_acc <= 1.0
    assert (out / INT8_ZIP_FILE).is_file()
    assert (out / INT8_MODEL_FILE).is_file()
    assert PredictionEngine.load(out / INT8_ZIP_FILE).labels == trained["labels"]
    assert not (trained["run_dir"] / INT8_ZIP_FILE).exists()


def test_export_errors_are_one_line_with_the_fix(cli, home, tmp_path, trained):
    cli("export", "run-nothere").user_error("neither a run id nor an existing MLModel.zip", "run-0123456789ab")
    cli("export", RUN_ID).user_error(f"Run '{RUN_ID}' does not exist", "'modelbuilder runs list'")
    cli("export", str(tmp_path / "missing.zip")).user_error("neither a run id nor an existing MLModel.zip")
    not_a_zip = tmp_path / "notes.zip"
    not_a_zip.write_text("hello")
    cli("export", str(not_a_zip), "--validation-data", str(trained["data"])).user_error("not a readable zip")
    cli("export", str(trained["run_dir"] / "MLModel.zip"), "--validation-data",
        str(tmp_path / "nowhere")).user_error("is not a folder")
    wrong = make_image_folder(tmp_path / "wrong", per_label=2, labels=("cat", "owl"))
    cli("export", str(trained["run_dir"] / "MLModel.zip"), "--validation-data", str(wrong)).user_error(
        "labels the model does not know: owl")
