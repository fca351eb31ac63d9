"""Manifests as AutoML writes them (JSONL), and as tables (CSV/TSV): paths, URIs, splits, and every mistake
named with its line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modelbuilder.errors import DataError
from modelbuilder.training import data
from modelbuilder.training.checkpoint import TrainState
from modelbuilder.training.distributed import Dist
from modelbuilder.training.engine import build_loop
from modelbuilder.training.loop import Budget, train_one_epoch
from modelbuilder.training.prepare import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter


def _files(root: Path) -> list[tuple[str, str]]:
    """(path relative to root, label) of a label-folder set."""
    return [(str(p.relative_to(root)), p.parent.name) for p in sorted(root.glob("*/*"))]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_paths_are_relative_to_it_and_file_uris_are_read(image_folder):
    root = image_folder(per_label=3)
    rows = [{"image_url": rel, "label": label} for rel, label in _files(root)]
    rows[0]["image_url"] = (root / rows[0]["image_url"]).as_uri()  # file:///.../cat/000.jpg
    rows[1]["label"] = [rows[1]["label"]]  # a list of one label: that label (multi-class), or a set of one
    samples, skipped = data.discover(_jsonl(root / "m.jsonl", rows))
    assert not skipped
    assert [(str(s.path.relative_to(root)), s.label) for s in samples] == _files(root)
    assert [s.line for s in samples[:2]] == [1, 2]


@pytest.mark.parametrize("url", ["azureml://datastores/images/paths/cat/1.jpg", "s3://bucket/cat/1.jpg",
                                 "http://example.com/cat/1.jpg", "https://example.com/cat/1.jpg",
                                 "file://otherhost/data/cat/1.jpg"])
def test_urls_are_refused_with_their_line(image_folder, url):
    root = image_folder(per_label=2)
    rows = [{"image_url": "cat/000.jpg", "label": "cat"}, {"image_url": url, "label": "dog"}]
    with pytest.raises(DataError, match=r"^Line 2 of .*m\.jsonl") as info:
        data.discover(_jsonl(root / "m.jsonl", rows))
    assert "local files only" in info.value.hint


@pytest.mark.parametrize(("name", "text", "line", "says"), [
    ("m.csv", "path,category\ncat/000.jpg,cat\n", 1, "lacks the columns ImageSource and Label"),
    ("m.csv", "ImageSource,Label\ncat/000.jpg,cat\ndog/000.jpg,\n", 3, "has an empty label"),
    ("m.tsv", "ImageSource\tLabel\tSplit\ncat/000.jpg\tcat\ttest\n", 2, "unknown split 'test'"),
    ("m.csv", "ImageSource,Label\ncat/000.jpg,cat\n../elsewhere/x.png,dog\n", 3, "points outside its folder"),
    ("m.csv", "ImageSource,Label\n/etc/passwd,dog\n", 2, "points outside its folder"),
    ("m.jsonl", '{"image_url": "cat/000.jpg", "label": "cat"}\n{"image_url": "dog/000.jpg"}\n', 2, "has no label"),
    ("m.jsonl", '{"label": "cat"}\n', 1, "has no image_url"),
    ("m.jsonl", '\n{"image_url": "cat/000.jpg", "label": []}\n', 2, "has an empty label"),
    ("m.jsonl", '{"image_url": "cat/000.jpg", "label": 3}\n', 1, "neither a text nor a list"),
    ("m.jsonl", '{"image_url": "cat/000.jpg", "label": "cat", "split": "holdout"}\n', 1, "unknown split"),
    ("m.jsonl", '{"image_url": "cat/000.jpg", "label": "cat"}\n{"image_url": "dog/0\n', 2, "is not valid JSON"),
    ("m.jsonl", '["cat/000.jpg", "cat"]\n', 1, "is not a JSON object"),
])
def test_every_bad_manifest_gets_one_line_with_its_line_number(image_folder, name, text, line, says):
    root = image_folder(per_label=2)
    (root / name).write_text(text)
    with pytest.raises(DataError) as info:
        data.discover(root / name)
    message = info.value.message
    assert message.startswith(f"Line {line} of "), message
    assert says in message
    assert "\n" not in message
    assert info.value.hint


def test_several_labels_in_a_multi_class_training_name_their_line(image_folder):
    root = image_folder(per_label=2)
    rows = [{"image_url": rel, "label": label} for rel, label in _files(root)]
    rows[2]["label"] = ["dog", "sunset"]
    samples, _ = data.discover(_jsonl(root / "m.jsonl", rows))
    with pytest.raises(DataError, match=r"^Line 3 of .* several labels \(dog, sunset\)"):
        data.check_labels(samples, str(root / "m.jsonl"))


def test_lines_naming_missing_files_are_listed_with_their_line_numbers(image_folder, tmp_path):
    root = image_folder(per_label=4)
    rows = [{"image_url": rel, "label": label} for rel, label in _files(root)]
    rows.insert(2, {"image_url": "cat/gone.jpg", "label": "cat"})
    rows.append({"image_url": "dog/lost/x.png", "label": "dog"})
    manifest = _jsonl(root / "m.jsonl", rows)
    prepared = prepare_data(TrainConfig(data=str(manifest), image_size=32), tmp_path / "cache", MemoryReporter())
    skipped = prepared.report.to_dict()["skipped"]
    assert skipped == [
        {"path": "cat/gone.jpg", "reason": "line 3 of m.jsonl: file not found", "line": 3},
        {"path": "dog/lost/x.png", "reason": f"line {len(rows)} of m.jsonl: file not found", "line": len(rows)}]
    assert len(prepared.train) + len(prepared.val) == 8


def test_a_manifest_whose_files_are_all_missing_says_so(tmp_path):
    manifest = _jsonl(tmp_path / "m.jsonl", [{"image_url": "a.jpg", "label": "cat"},
                                             {"image_url": "b.jpg", "label": "dog"}])
    with pytest.raises(DataError, match=r"None of the 2 images listed .* 'a.jpg', line 1 of m.jsonl: file not"):
        data.discover(manifest)


def test_unreadable_files_of_a_manifest_name_their_line(image_folder, tmp_path):
    root = image_folder(per_label=4)
    (root / "cat" / "001.png").write_bytes(b"not an image")
    rows = [f"{rel},{label}" for rel, label in _files(root)]
    manifest = root / "m.csv"
    manifest.write_text("ImageSource,Label\n" + "\n".join(rows) + "\n")
    prepared = prepare_data(TrainConfig(data=str(manifest), image_size=32), tmp_path / "cache", MemoryReporter())
    (bad,) = prepared.report.skipped
    assert (bad.path, bad.line) == ("cat/001.png", 3)
    assert bad.reason.startswith("line 3 of m.csv: ")


def test_the_manifest_can_name_the_split(image_folder, tmp_path):
    root = image_folder(per_label=5)
    rows = [{"image_url": rel, "label": label, **({"split": "validation"} if rel.endswith("004.jpg") else {})}
            for rel, label in _files(root)]
    rows[0]["split"] = "train"
    manifest = _jsonl(root / "m.jsonl", rows)
    prepared = prepare_data(TrainConfig(data=str(manifest), image_size=32), tmp_path / "cache", MemoryReporter())
    assert [image.path for image in prepared.val_images] == ["cat/004.jpg", "dog/004.jpg"]
    assert len(prepared.train) == 8
    assert "marked validation" in prepared.report.validation_source
    with pytest.raises(DataError, match="Line 5 of .* marks an image for validation, and --validation-data"):
        prepare_data(TrainConfig(data=str(manifest), validation_data=str(root), image_size=32), tmp_path / "cache",
                     MemoryReporter())
    for row in rows:
        row["split"] = "validation"
    _jsonl(manifest, rows)
    with pytest.raises(DataError, match="none is left to train on"):
        prepare_data(TrainConfig(data=str(manifest), image_size=32), tmp_path / "cache", MemoryReporter())


def test_validation_data_can_be_a_second_manifest(image_folder, tmp_path):
    train = image_folder("train", per_label=4)
    val = image_folder("val", per_label=2)
    manifest = _jsonl(val / "val.jsonl", [{"image_url": rel, "label": label} for rel, label in _files(val)])
    prepared = prepare_data(TrainConfig(data=str(train), validation_data=str(manifest), image_size=32),
                            tmp_path / "cache", MemoryReporter())
    assert (len(prepared.train), len(prepared.val)) == (8, 4)
    assert prepared.report.validation_source == str(manifest)


def _first_epoch(recipe: TrainConfig, cache: Path) -> tuple[list[str], list[str], float]:
    """The training and validation images (relative paths) and the first epoch's mean training loss."""
    prepared = prepare_data(recipe, cache, MemoryReporter())
    torch.manual_seed(recipe.seed)  # as run_training seeds before it builds the model
    loop, _ = build_loop(recipe, prepared, MemoryReporter(), Dist(), offline=True, budget=Budget())
    state = TrainState()
    assert train_one_epoch(loop, prepared.train, state) is None
    return ([i.path for i in prepared.train_images], [i.path for i in prepared.val_images],
            state.partial["loss"] / state.partial["images"])


def test_a_folder_a_csv_and_a_jsonl_of_the_same_images_train_alike(image_folder, tmp_path):
    root = image_folder(per_label=8, labels=("cat", "dog", "fox"))
    files = _files(root)
    shuffled = [files[i] for i in np.random.default_rng(3).permutation(len(files))]  # order must not matter
    csv = root / "images.csv"
    csv.write_text("ImageSource,Label\n" + "".join(f"{rel},{label}\n" for rel, label in shuffled))
    jsonl = _jsonl(root / "images.jsonl", [{"image_url": rel, "label": label} for rel, label in reversed(files)])
    recipe = TrainConfig(data=str(root), architecture="tiny", weights="none", image_size=32, epochs=1,
                         batch_size=8, seed=4)
    runs = [_first_epoch(recipe.with_(data=str(source)), tmp_path / "cache") for source in (root, csv, jsonl)]
    folder_train, folder_val, folder_loss = runs[0]
    assert (len(folder_train), len(folder_val)) == (18, 6)
    for train, val, loss in runs[1:]:
        assert (train, val) == (folder_train, folder_val)
        assert loss == pytest.approx(folder_loss, abs=1e-6)


def test_a_labels_column_gives_several_labels_separated_by_semicolons_or_quoted_commas(image_folder):
    root = image_folder(per_label=2)
    (root / "tags.csv").write_text('ImageSource,Labels\ncat/000.jpg,"cat,bright"\ncat/001.png,cat\n'
                                   "dog/000.jpg,dog; bright\ndog/001.png,dog\n")
    samples, _ = data.discover(root / "tags.csv")
    assert [s.labels for s in samples] == [("cat", "bright"), ("cat",), ("dog", "bright"), ("dog",)]
    assert data.task_of(samples, "auto") == "multilabel"
    assert data.check_labels(samples, "tags.csv", "multilabel") == ["bright", "cat", "dog"]
    (root / "bad.csv").write_text("ImageSource,Labels\ncat/000.jpg,cat;;\n")
    with pytest.raises(DataError, match="^Line 2 of .* has an empty label"):
        data.discover(root / "bad.csv")
