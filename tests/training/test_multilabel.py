"""Multi-label classification end to end: labels from a manifest, sigmoid + BCE, thresholds chosen on validation
and carried in pipeline.json, the metrics that fit, and predictions that list every label found."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from fastapi.testclient import TestClient

from modelbuilder.core.services import Services
from modelbuilder.errors import DataError, InvalidInput
from modelbuilder.results.files import (
    DATA_REPORT_FILE,
    MAP_FILE,
    METRICS_FILE,
    PREDICTIONS_FILE,
    RECIPE_FILE,
    THUMBNAILS_FILE,
    ZIP_FILE,
    project_folders,
)
from modelbuilder.results.runtime import PredictionEngine, read_model_package
from modelbuilder.sdk import insight, scoring
from modelbuilder.sdk.export import export_int8
from modelbuilder.server.api import create_app
from modelbuilder.server.model_server import create_model_app
from modelbuilder.training import data
from modelbuilder.training.engine import run_training
from modelbuilder.training.evaluate import best_thresholds, multilabel_metrics
from modelbuilder.training.explain import Explainer
from modelbuilder.training.predictions import about, multilabel_predictions_of, read_predictions, write_predictions
from modelbuilder.training.prepare import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.cli.driver import in_process
from tests.completed import TrainedRun, make_completed_run
from tests.imagery import make_image_folder, make_multilabel_set


def test_thresholds_maximise_each_labels_f1_and_the_metrics_follow_them():
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2], [0.35, 0.6], [0.3, 0.7], [0.1, 0.65], [0.4, 0.1]])
    cuts = best_thresholds(probs, targets > 0.5)
    # a: every positive (0.35 and up) above every negative (0.3 and below); b: 0.6 and up (F1 0.8), next below 0.2
    assert cuts.tolist() == pytest.approx([0.325, 0.4])  # halfway to the next score down
    m = multilabel_metrics(probs, targets, ["a", "b"])
    assert m["thresholds"] == {"a": pytest.approx(0.325), "b": pytest.approx(0.4)}
    a, b = m["per_label"]
    assert (a["precision"], a["recall"], a["f1"]) == (1.0, 1.0, 1.0)
    assert (b["precision"], b["recall"]) == (pytest.approx(2 / 3), 1.0)
    assert m["subset_accuracy"] == pytest.approx(4 / 5)  # only image 3 (b wrongly predicted) is not all right
    assert m["micro_f1"] == pytest.approx(2 * 5 / (2 * 5 + 1))  # 5 true positives, 1 false positive, 0 missed
    assert m["macro_f1"] == pytest.approx((1.0 + 0.8) / 2)
    # a's positives all outrank its negatives (AP 1); b's negative 0.65 sits between its positives 0.7 and 0.6
    assert m["mean_average_precision"] == pytest.approx((1.0 + (1.0 + 2 / 3) / 2) / 2)
    fixed = multilabel_metrics(probs, targets, ["a", "b"], thresholds=np.array([0.5, 0.5]))
    assert fixed["per_label"][0]["recall"] == pytest.approx(1 / 3)  # at 0.5, two of a's positives are missed


def test_the_task_comes_from_the_data_where_it_is_unambiguous(tmp_path, image_folder):
    manifest = make_multilabel_set(tmp_path / "tags", per_label=3)
    samples, _ = data.discover(manifest)
    assert data.task_of(samples, "auto") == "multilabel"
    assert data.check_labels(samples, str(manifest), "multilabel") == ["bright", "cat", "dog"]
    with pytest.raises(DataError, match="several labels .* --task multilabel"):
        data.check_labels(samples, str(manifest), data.task_of(samples, "multiclass"))
    folder = image_folder(per_label=2)
    assert data.task_of(data.discover(folder)[0], "auto") == "multiclass"
    with pytest.raises(InvalidInput, match="Multi-label training takes no class_weights"):
        TrainConfig(data=str(manifest), task="multilabel", class_weights="balanced")
    auto = TrainConfig(data=str(manifest), mixup_alpha=0.2, weights="none")  # auto: accepted until the data is read
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInput, match=r"MixUp or CutMix \(the data gives images several labels\)"):
        prepare_data(auto, cache, MemoryReporter())
    assert not any(p.is_file() for p in cache.rglob("*"))  # refused before a single image was decoded


def test_multilabel_targets_and_split(tmp_path):
    manifest = make_multilabel_set(tmp_path / "tags", per_label=5)
    prepared = prepare_data(TrainConfig(data=str(manifest), image_size=32), tmp_path / "cache", MemoryReporter())
    assert prepared.task == "multilabel"
    assert prepared.labels == ["bright", "cat", "dog"]
    both = np.concatenate([prepared.train.targets, prepared.val.targets])
    assert both.shape == (10, 3)
    assert both.sum(0).tolist() == [6, 5, 5]  # images 0, 2, 4 of each label are bright
    assert (both[:, 1] + both[:, 2] == 1).all()
    assert (len(prepared.train), len(prepared.val)) == (8, 2)
    report = prepared.report.to_dict()
    assert report["train_per_label"]["bright"] + report["validation_per_label"]["bright"] == 6
    assert (report["train_images"], report["validation_images"]) == (8, 2)  # images, each counted once
    assert report["validation_source"] == "random split 0.2 (seed 0)"


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel")
    manifest = make_multilabel_set(root / "tags", per_label=10)
    recipe = TrainConfig(data=str(manifest), architecture="tiny", weights="none", image_size=32, epochs=3,
                         batch_size=4, lr=1e-2, name="Tags", precision="fp32")
    result = run_training(recipe, root / "run", MemoryReporter(), cache_root=root / "cache", offline=True)
    return manifest, result


def test_a_multilabel_run_exports_its_thresholds_and_metrics(multilabel_run):
    _, result = multilabel_run
    metrics = json.loads((result.run_dir / METRICS_FILE).read_text())
    assert metrics["task"] == "multilabel"
    for key in ("subset_accuracy", "micro_f1", "macro_f1", "mean_average_precision", "thresholds", "per_label"):
        assert key in metrics, key
    assert {row["label"] for row in metrics["per_label"]} == {"bright", "cat", "dog"}
    assert json.loads((result.run_dir / RECIPE_FILE).read_text())["task"] == "multilabel"
    package = read_model_package(result.run_dir / ZIP_FILE)
    assert package.pipeline["task"] == "image-classification-multilabel"
    output = package.pipeline["output"]
    assert (output["kind"], output["activation"]) == ("logits", "sigmoid")  # bestModel.onnx still gives logits
    assert output["thresholds"] == [metrics["thresholds"][label] for label in package.labels]
    assert json.loads((result.run_dir / MAP_FILE).read_text()) == ["bright", "cat", "dog"]


def test_the_runtime_applies_sigmoid_and_thresholds(multilabel_run):
    manifest, result = multilabel_run
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    assert engine.multilabel
    images = sorted(manifest.parent.glob("*/*.*"))
    outputs = engine.predict_batch(images)
    thresholds = engine.thresholds
    for out in outputs:
        assert out.predicted_labels == [label for label, score, cut in zip(engine.labels, out.score, thresholds,
                                                                            strict=True) if score >= cut]
        assert out.prediction == engine.labels[int(np.argmax(out.score))]
    assert not np.allclose([sum(out.score) for out in outputs], 1.0)  # independent scores, not a softmax
    assert any(len(out.predicted_labels) >= 2 for out in outputs)


def test_the_generated_console_app_prints_every_label_found(multilabel_run):
    manifest, result = multilabel_run
    console_app = result.run_dir / project_folders("Tags")[0]
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    several = next(p for p in sorted(manifest.parent.glob("*/*.*"))
                   if len(engine.predict(p).predicted_labels) >= 2)
    shown = subprocess.run([sys.executable, str(console_app / "main.py"), str(several)], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    found = engine.predict(several).predicted_labels
    assert f"Predicted labels: {', '.join(found)}" in shown
    assert "Threshold" in shown
    assert shown.count("<- predicted") == len(found)


def test_multiclass_outputs_do_not_change(trained):
    engine = PredictionEngine.load(trained.folder / ZIP_FILE)
    assert not engine.multilabel
    assert engine.thresholds is None
    image = sorted(trained.data.glob("*/*"))[0]
    out = engine.predict(image)
    assert out.predicted_labels is None
    assert sum(out.score) == pytest.approx(1.0)
    assert "output" in read_model_package(trained.folder / ZIP_FILE).pipeline
    assert "activation" not in read_model_package(trained.folder / ZIP_FILE).pipeline["output"]


def test_a_folder_stays_multiclass(image_folder, tmp_path):
    folder = make_image_folder(tmp_path / "pets", per_label=3)
    prepared = prepare_data(TrainConfig(data=str(folder), image_size=32), tmp_path / "cache", MemoryReporter())
    assert prepared.task == "multiclass"
    assert prepared.train.targets.ndim == 1


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_batch_scoring_lists_the_labels_found(multilabel_run, tmp_path, suffix):
    manifest, result = multilabel_run
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    images = scoring.images_in(manifest.parent / "cat")
    out = tmp_path / f"scores{suffix}"
    scoring.score_to_file(engine, images, out)
    expected = [engine.predict(image.path).predicted_labels for image in images]
    if suffix == ".csv":
        with out.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert [row["predicted_labels"] for row in rows] == [";".join(found) for found in expected]
    else:
        assert [json.loads(line)["predicted_labels"] for line in out.read_text().splitlines()] == expected


def test_the_int8_export_refuses_a_multilabel_model(multilabel_run, home):
    _, result = multilabel_run
    with Services() as services, pytest.raises(InvalidInput, match="this one is multi-label"):
        export_int8(services, str(result.run_dir / ZIP_FILE), validation_data=str(result.run_dir))


def test_a_multilabel_runs_predictions_are_its_validation_images_as_the_model_sees_them(multilabel_run):
    manifest, result = multilabel_run
    metrics = json.loads((result.run_dir / METRICS_FILE).read_text())
    rows = read_predictions(result.run_dir / PREDICTIONS_FILE)
    assert [row.index for row in rows] == list(range(metrics["num_images"]))  # one per validation image
    given = {line["image_url"]: line["label"] for line in map(json.loads, manifest.read_text().splitlines())}
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    for row in rows:
        assert row.multilabel
        assert row.true_label == ";".join(sorted(given[row.path]))  # the run's label order is sorted
        assert list(row.predicted_labels) == engine.predict(manifest.parent / row.path).predicted_labels
        assert row.label_scores == pytest.approx(dict(zip(engine.labels, engine.predict(manifest.parent / row.path)
                                                          .score, strict=True)), abs=1e-5)
        assert row.correct == (row.true_labels == row.predicted_labels)
    assert sum(row.correct for row in rows) / len(rows) == pytest.approx(metrics["subset_accuracy"])
    with zipfile.ZipFile(result.run_dir / THUMBNAILS_FILE) as archive:
        assert {f"predictions/{i}.jpg" for i in range(len(rows))} == set(archive.namelist())
    suspects = json.loads((result.run_dir / DATA_REPORT_FILE).read_text())["suspects"]
    assert suspects["count"] == 0
    assert "multi-class" in suspects["note"]  # cleanlab's check needs one label per image


LABELS = ["bright", "cat", "dog"]
CUTS = [0.5, 0.4, 0.6]
TRUE = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
PROBS = np.array([[0.9, 0.1, 0.2],  # right; its closest call: cat, 0.3 under its threshold
                  [0.7, 0.3, 0.1],  # cat missed by 0.1
                  [0.2, 0.95, 0.65],  # cat a false alarm by 0.55
                  [0.45, 0.35, 0.9],  # cat missed by 0.05, dog a false alarm by 0.3
                  [0.1, 0.2, 0.3]])  # right (no label at all); closest call: cat, 0.2


def test_a_multilabel_row_is_about_its_most_wrong_label(tmp_path):
    rows = multilabel_predictions_of([f"x/{i}.png" for i in range(5)], TRUE, PROBS, LABELS, CUTS)
    assert [(r.true_label, r.predicted_label) for r in rows] == [
        ("bright", "bright"), ("bright;cat", "bright"), ("dog", "cat;dog"), ("cat", "dog"), ("", "")]
    assert [(r.scored_label, r.score, r.mistake) for r in rows] == [
        ("cat", pytest.approx(0.3), None), ("cat", pytest.approx(0.1), "missed"),
        ("cat", pytest.approx(0.55), "false alarm"), ("dog", pytest.approx(0.3), "false alarm"),
        ("cat", pytest.approx(0.2), None)]
    assert [r.correct for r in rows] == [True, False, False, False, True]
    write_predictions(tmp_path / PREDICTIONS_FILE, rows)
    assert read_predictions(tmp_path / PREDICTIONS_FILE) == rows
    assert about(rows[3], "cat", dict(zip(LABELS, CUTS, strict=True))).mistake == "missed"


def test_the_images_behind_a_multilabel_runs_numbers(multilabel_run, home, capsys, monkeypatch):
    manifest, result = multilabel_run
    trained = TrainedRun(manifest, result.run_dir, json.loads((result.run_dir / METRICS_FILE).read_text()))
    with Services() as services:
        run_id = make_completed_run(services, trained)
        folder = services.artifacts.run_dir(run_id)
        write_predictions(folder / PREDICTIONS_FILE,  # known scores, so the order is checked against a known answer
                          multilabel_predictions_of([f"x/{i}.png" for i in range(5)], TRUE, PROBS, LABELS, CUTS))
        metrics = {**trained.metrics, "thresholds": dict(zip(LABELS, CUTS, strict=True))}
        (folder / METRICS_FILE).write_text(json.dumps(metrics))
        run = services.runs.get(run_id)

        def indices(**query):
            return [r.index for r in insight.errors(services, run, **query)]

        assert indices() == [2, 3, 1]  # every image whose labels are not its true ones, the most wrong first
        assert indices(include_correct=True) == [2, 3, 1, 4, 0]  # then the right ones, the least sure first
        assert indices(label="cat") == [2, 1, 3]  # cat missed or falsely found, by cat's own margin
        assert [r.mistake for r in insight.errors(services, run, label="cat")] == ["false alarm", "missed", "missed"]
        assert indices(label="bright") == []
        assert indices(label="bright", include_correct=True) == [1, 0]  # images with bright right, least sure first
        assert indices(label="dog", include_correct=True) == [3, 2]
        assert indices(true="cat") == [3, 1]
        with pytest.raises(InvalidInput, match="has no label 'cow'"):
            insight.errors(services, run, label="cow")
    cli = in_process(capsys, monkeypatch)
    assert [r["index"] for r in cli("runs", "errors", run_id, "--label", "cat", "--json").json()] == [2, 1, 3]
    table = cli("runs", "errors", run_id).ok().rows()
    assert [row[:6] for row in table] == [["2", "x/2.png", "dog", "cat;dog", "cat", "false alarm"],
                                          ["3", "x/3.png", "cat", "dog", "dog", "false alarm"],
                                          ["1", "x/1.png", "bright;cat", "bright", "cat", "missed"]]
    assert "not checked: the check is for multi-class runs" in cli("runs", "report", run_id).ok().stdout
    with TestClient(create_app(start_agents=False), base_url="http://127.0.0.1") as client:
        answer = client.get(f"/api/v1/runs/{run_id}/errors", params={"label": "cat"})
        assert answer.status_code == 200
        items = answer.json()
        assert [(r["index"], r["scored_label"], r["correct"]) for r in items] == [
            (2, "cat", False), (1, "cat", False), (3, "cat", False)]
        assert items[0]["predicted_labels"] == ["cat", "dog"]
        assert items[0]["label_scores"] == {"bright": 0.2, "cat": 0.95, "dog": 0.65}
        assert client.get(f"/api/v1/runs/{run_id}/thumbnails/predictions/0").headers["content-type"] == "image/jpeg"
        page = client.get(f"/workspaces/default/runs/{run_id}/gallery", params={"label": "cat", "all": "1"})
        assert page.status_code == 200
        assert "cat: false alarm" in page.text


def test_the_head_phase_trains_a_multilabel_head_on_frozen_features(tmp_path):
    manifest = make_multilabel_set(tmp_path / "tags", per_label=6)
    weights = tmp_path / "backbone.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), weights)  # "pretrained" weights from a file
    recipe = TrainConfig(data=str(manifest), architecture="resnet18", weights=str(weights), image_size=32,
                         epochs=1, batch_size=4, head_epochs=3, precision="fp32", name="Tags")
    result = run_training(recipe, tmp_path / "run", MemoryReporter(), cache_root=tmp_path / "cache", offline=True)
    history = result.metrics["head_history"]
    assert len(history) == 3
    assert all(0.0 <= h["val_accuracy"] <= 1.0 and np.isfinite(h["val_loss"]) for h in history)
    assert result.metrics["task"] == "multilabel"


def test_explanations_of_a_multilabel_model_carry_its_own_scores(multilabel_run):
    manifest, result = multilabel_run
    image = sorted(manifest.parent.glob("cat/*.*"))[0]
    explained = Explainer.load(result.run_dir).explain(image)
    predicted = PredictionEngine.load(result.run_dir / ZIP_FILE).predict(image)
    assert explained.score == pytest.approx(predicted.score, abs=1e-5)  # sigmoids, as the runtime gives them


def test_the_model_server_answers_the_labels_found(multilabel_run):
    manifest, result = multilabel_run
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    with TestClient(create_model_app(engine, "tags", "1", max_batch=8, max_wait_s=0.0)) as client:
        for image in sorted(manifest.parent.glob("dog/*.*"))[:4]:
            body = client.post("/predict", files={"image": (image.name, image.read_bytes())}).json()
            assert body["predicted_labels"] == engine.predict(image).predicted_labels


def test_predict_on_the_command_line_lists_the_labels_found(multilabel_run, home, capsys, monkeypatch):
    manifest, result = multilabel_run
    engine = PredictionEngine.load(result.run_dir / ZIP_FILE)
    folder = manifest.parent / "cat"
    cli = in_process(capsys, monkeypatch)
    entries = cli("predict", str(result.run_dir / ZIP_FILE), str(folder), "--format", "json").json()
    assert [e["predicted_labels"] for e in entries] == [engine.predict(Path(e["image"])).predicted_labels
                                                        for e in entries]
    table = list(csv.DictReader(cli("predict", str(result.run_dir / ZIP_FILE), str(folder), "--format",
                                    "csv").ok().stdout.splitlines()))
    assert [row["predicted_labels"] for row in table] == [";".join(e["predicted_labels"]) for e in entries]
