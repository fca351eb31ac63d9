"""Data discovery, checks, the decoded cache and the split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modelbuilder.errors import DataError
from modelbuilder.results.runtime import Preprocess, center_crop, preprocess
from modelbuilder.training import data
from modelbuilder.training.cache import build_decoded_cache
from modelbuilder.training.engine import prepare_data
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.imagery import add_odd_files, labeled_image


def test_folder_per_label_is_discovered(image_folder):
    root = image_folder(per_label=5, labels=("cat", "dog", "fox"))
    samples, skipped = data.discover(root)
    assert len(samples) == 15
    assert not skipped
    assert data.check_labels(samples, str(root)) == ["cat", "dog", "fox"]


@pytest.mark.parametrize(("suffix", "sep"), [(".tsv", "\t"), (".csv", ",")])
def test_manifest_paths_are_relative_to_it(image_folder, suffix, sep):
    root = image_folder(per_label=3)
    manifest = root / f"list{suffix}"
    lines = [f"ImageSource{sep}Label"] + [f"cat/{i:03d}.{'png' if i % 2 else 'jpg'}{sep}kitty" for i in range(3)]
    lines += [f"dog/{i:03d}.{'png' if i % 2 else 'jpg'}{sep}puppy" for i in range(3)]
    manifest.write_text("\n".join(lines) + "\n")
    samples, _ = data.discover(manifest)
    assert {s.label for s in samples} == {"kitty", "puppy"}
    assert all(s.path.is_file() for s in samples)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        data.discover(tmp_path / "nope")
    assert "one sub-folder per label" in info.value.hint  # said in concepts: every face shows this hint


def test_no_images_is_an_error(tmp_path):
    (tmp_path / "d" / "cat").mkdir(parents=True)
    (tmp_path / "d" / "dog").mkdir()
    samples, _ = data.discover(tmp_path / "d")
    with pytest.raises(DataError, match="No images"):
        data.check_labels(samples, "d")


def test_single_label_is_an_error(image_folder):
    root = image_folder(labels=("cat",), per_label=3)
    with pytest.raises(DataError, match="Only one label"):
        data.check_labels(data.discover(root)[0], str(root))


def test_a_set_whose_images_cannot_be_read_is_an_error(image_folder, tmp_path):
    root = image_folder(labels=("cat", "dog"), per_label=3)
    for label in ("cat", "dog"):
        for path in (root / label).iterdir():
            path.write_bytes(b"not an image")
    with pytest.raises(DataError, match="None of the 6 files") as info:
        data.check_readable(data.discover(root)[0], str(root))
    assert "not an image" in info.value.message
    for path in (root / "cat").iterdir():  # one label readable again: still only one label to learn
        labeled_image("cat", 0).save(path, format="PNG")
    with pytest.raises(DataError, match="Only the label 'cat'"):
        data.check_readable(data.discover(root)[0], str(root))


def test_a_few_unreadable_files_beside_readable_ones_are_not_an_error(image_folder):
    root = image_folder(labels=("cat", "dog"), per_label=3)
    first = sorted((root / "dog").iterdir())[0]
    first.write_bytes(b"truncated")
    assert data.check_readable(data.discover(root)[0], str(root)) == ["cat", "dog"]


def test_folder_without_label_folders_is_an_error(tmp_path):
    labeled_image("cat", 0).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="no label sub-folders"):
        data.discover(tmp_path)


def test_already_split_folder_gets_a_helpful_error(image_folder, tmp_path):
    image_folder("split/train")
    image_folder("split/val")
    with pytest.raises(DataError, match="looks split") as info:
        data.discover(tmp_path / "split")
    assert str(tmp_path / "split" / "train") in info.value.hint
    assert "as the validation data" in info.value.hint


def test_manifest_without_columns_is_an_error(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,category\na.png,cat\n")
    with pytest.raises(DataError, match="ImageSource and Label"):
        data.discover(manifest)


@pytest.mark.parametrize("bad", ["../outside.png", "/etc/passwd", "cat/../../outside.png"])
def test_manifest_path_escaping_its_folder_is_an_error(image_folder, bad):
    root = image_folder(per_label=2)
    (root / "m.tsv").write_text(f"ImageSource\tLabel\ncat/000.jpg\tcat\n{bad}\tdog\n")
    with pytest.raises(DataError, match="outside its folder"):
        data.discover(root / "m.tsv")


def test_symlinks_outside_the_folder_and_loops_are_skipped(image_folder, tmp_path):
    root = image_folder(per_label=2)
    outside = tmp_path / "secret.png"
    labeled_image("cat", 9).save(outside)
    os.symlink(outside, root / "cat" / "link-out.png")
    os.symlink(root / "cat" / "loop-b.png", root / "cat" / "loop-a.png")
    os.symlink(root / "cat" / "loop-a.png", root / "cat" / "loop-b.png")
    os.symlink(root / "dog" / "000.jpg", root / "cat" / "inside.jpg")
    samples, skipped = data.discover(root)
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert "outside the data folder" in reasons["link-out.png"]
    assert "looping" in reasons["loop-a.png"]
    assert "looping" in reasons["loop-b.png"]
    assert any(s.path.name == "inside.jpg" for s in samples)


def test_stratified_split_is_seeded_and_keeps_every_label():
    labels = [0] * 10 + [1] * 30 + [2] * 2
    train, val = data.stratified_split(labels, 0.2, seed=3)
    assert sorted(train + val) == list(range(42))
    assert not set(train) & set(val)
    counts = np.bincount([labels[i] for i in val], minlength=3)
    assert counts.tolist() == [2, 6, 1]
    assert data.stratified_split(labels, 0.2, seed=3) == (train, val)
    assert data.stratified_split(labels, 0.2, seed=4) != (train, val)


def test_image_size_follows_the_data(image_folder):
    small = image_folder("small", per_label=3, size=8)
    big = image_folder("big", per_label=3, size=300)
    mid = image_folder("mid", per_label=3, size=70)
    pick = data.choose_image_size
    assert pick([s.path for s in data.discover(small)[0]]) == 32
    assert pick([s.path for s in data.discover(big)[0]]) == 224
    assert pick([s.path for s in data.discover(mid)[0]]) == 96


def test_decoded_cache_matches_prediction_preprocessing_and_is_reused(image_folder, tmp_path):
    root = image_folder(per_label=3, size=50)
    paths = [s.path for s in data.discover(root)[0]]
    calls = []
    cache = build_decoded_cache(paths, 37, tmp_path / "cache", on_progress=lambda d, t: calls.append(d))
    spec = Preprocess(resize=37, crop=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    for i in (0, 3, 5):
        np.testing.assert_array_equal(center_crop(cache.read([i])[0], 32), preprocess(paths[i], spec))
    stamp = cache.path.stat().st_mtime_ns
    again = build_decoded_cache(paths, 37, tmp_path / "cache")
    assert again.path == cache.path
    assert again.path.stat().st_mtime_ns == stamp
    os.utime(paths[0], ns=(1, 1))  # a changed file makes a new cache
    assert build_decoded_cache(paths, 37, tmp_path / "cache").path != cache.path


def test_odd_files_are_used_or_skipped_with_a_reason(image_folder, tmp_path):
    root = image_folder(per_label=6)
    expected = add_odd_files(root, "cat")
    reporter = MemoryReporter()
    prepared = prepare_data(TrainConfig(data=str(root), image_size=32), tmp_path / "cache", reporter)
    skipped = {Path(s.path).name: s.reason for s in prepared.report.skipped}
    for name, fate in expected.items():
        assert (name in skipped) == (fate == "skipped"), name
    assert "not an image" in skipped["notes.jpg"]
    total = len(prepared.train) + len(prepared.val)
    assert total == 12 + 4  # the four usable odd files count
    report = prepared.report.to_dict()
    assert report["train_images"] + report["validation_images"] == total
    assert set(report["train_per_label"]) == {"cat", "dog"}


def test_validation_data_with_unknown_labels_is_an_error(image_folder, tmp_path):
    train = image_folder("train", per_label=4)
    val = image_folder("val", per_label=2, labels=("cat", "fox"))
    with pytest.raises(DataError, match="fox"):
        prepare_data(TrainConfig(data=str(train), validation_data=str(val), image_size=32), tmp_path / "c",
                     MemoryReporter())
