"""Batch scoring (sdk/scoring.py): folders and manifests into CSV or JSON Lines, one row per image in
order, the same answers as the engine one image at a time, decoding that overlaps the model, and
one-line errors for what a user can get wrong."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelbuilder.core.services import Services
from modelbuilder.errors import DataError, InvalidInput, NotFound
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.results.runtime import PredictionEngine
from modelbuilder.sdk import scoring
from modelbuilder.sdk.models import Model, load_engine, model_file
from tests.completed import TrainedRun, make_completed_run


@pytest.fixture(scope="module")
def engine(trained: TrainedRun) -> PredictionEngine:
    return PredictionEngine.load(trained.folder / ZIP_FILE)


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    with Services() as opened:
        yield opened


@pytest.fixture
def folder(tmp_path: Path, trained: TrainedRun) -> Path:
    """The trained images in a folder of their own, with one file that is not an image, deep inside."""
    root = tmp_path / "to-score"
    for path in sorted(trained.data.rglob("*.*")):
        target = root / path.relative_to(trained.data)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"left out")
    return root


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_a_folder_into_csv_matches_one_image_at_a_time(engine: PredictionEngine, folder: Path, tmp_path: Path):
    seen: list[int] = []
    summary = scoring.score_to_file(engine, scoring.images_in(folder), tmp_path / "out" / "scores.csv",
                                    batch_size=4, workers=3, on_progress=seen.append)
    expected = _images(folder)
    assert (summary.images, summary.unreadable) == (len(expected), 1)
    assert summary.images_per_s > 0
    assert seen == list(range(1, len(expected) + 1))
    with summary.output.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [str(p) for p in expected]
    assert list(rows[0]) == ["image", "prediction", "cat", "dog", "error"]
    for row in rows:
        if row["image"].endswith("notes.jpg"):
            assert row["prediction"] == ""
            assert "not an image" in row["error"]
            continue
        one = engine.predict(row["image"])
        assert row["prediction"] == one.prediction
        assert [float(row[label]) for label in engine.labels] == pytest.approx(one.score, abs=1e-6)
        assert row["error"] == ""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scores.csv"]  # no partial file left


def test_a_jsonl_manifest_with_labels_into_jsonl(engine: PredictionEngine, folder: Path, tmp_path: Path):
    images = [p for p in _images(folder) if p.name != "notes.jpg"]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"image_url": str(p.relative_to(folder)), "label": p.parent.name}) + "\n"
                                for p in images) + "\n")
    summary = scoring.score_to_file(engine, scoring.images_in(manifest), tmp_path / "scores.jsonl", batch_size=3)
    lines = [json.loads(line) for line in summary.output.read_text().splitlines()]
    assert len(lines) == len(images) == summary.images
    assert [line["image"] for line in lines] == [str(p) for p in images]
    assert [line["label"] for line in lines] == [p.parent.name for p in images]
    for line, path in zip(lines, images, strict=True):
        assert line["prediction"] == engine.predict(path).prediction
        assert list(line["score"]) == engine.labels


@pytest.mark.parametrize(("name", "separator"), [("manifest.csv", ","), ("manifest.tsv", "\t")])
def test_a_table_manifest(engine: PredictionEngine, folder: Path, tmp_path: Path, name: str, separator: str):
    images = _images(folder)[:5]
    lines = ["ImageSource" + separator + "Label"]
    lines += [f"{p.relative_to(folder)}{separator}{p.parent.name}" for p in images]
    (folder / name).write_text("\n".join(lines) + "\n")
    listed = scoring.images_in(folder / name)
    assert [(i.path, i.label) for i in listed] == [(p, p.parent.name) for p in images]
    summary = scoring.score_to_file(engine, listed, tmp_path / "scores.csv")
    with summary.output.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == [p.parent.name for p in images]


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.jsonl"])
def test_a_manifest_without_labels_scores_every_image(engine: PredictionEngine, folder: Path, tmp_path: Path,
                                                      name: str):
    """Labels are optional to score; a file:// URI is decoded as training decodes it (%20 is a space)."""
    images = [p for p in _images(folder) if p.name != "notes.jpg"]
    spaced = images[0].with_name("a cat.jpg")
    images[0] = images[0].rename(spaced)
    written = [images[0].as_uri(), *(str(p.relative_to(folder)) for p in images[1:])]
    assert "%20" in written[0]
    text = ("ImageSource\n" + "".join(f"{w}\n" for w in written) if name.endswith(".csv")
            else "".join(json.dumps({"image_url": w}) + "\n" for w in written))
    listed = scoring.images_in(_write(folder / name, text))
    assert [(i.path, i.label) for i in listed] == [(p, None) for p in images]
    summary = scoring.score_to_file(engine, listed, tmp_path / "scores.csv")
    with summary.output.open() as f:
        rows = list(csv.DictReader(f))
    assert (summary.images, summary.unreadable) == (len(images), 0)
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert "label" not in rows[0]
    assert all(r["prediction"] in engine.labels and not r["error"] for r in rows)


@pytest.mark.parametrize(("name", "text", "line"), [
    ("m.csv", "ImageSource,Label\ncat/a.jpg,cat\ns3://bucket/cat/b.jpg,cat\n", 3),
    ("m.tsv", "ImageSource\ncat/a.jpg\nfile://otherhost/cat/b.jpg\n", 3),
    ("m.jsonl", '{"image_url": "cat/a.jpg"}\n{"image_url": "https://example.com/cat/b.jpg", "label": "cat"}\n', 2),
])
def test_a_url_in_a_manifest_is_refused_with_its_line(tmp_path: Path, name: str, text: str, line: int):
    """Nothing is fetched from a network: the same rule, and the same one-line error, as training's."""
    with pytest.raises(DataError, match=rf"^Line {line} of .*{name}") as error:
        scoring.images_in(_write(tmp_path / name, text))
    assert "\n" not in error.value.message
    assert "local files only" in error.value.hint


def test_what_scoring_reads_that_training_does_not(engine: PredictionEngine, folder: Path, tmp_path: Path):
    """A missing file is a row with its reason, a path may leave the manifest's folder, a split is not read
    (a test split is scored), and several labels are carried joined as predicted_labels are."""
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(_images(folder)[0].read_bytes())
    (folder / "sub").mkdir()
    manifest = _write(folder / "sub" / "m.csv", "ImageSource,Labels,Split\n../../elsewhere.jpg,\"cat,dog\",test\n"
                      "missing.jpg,cat,holdout\n" f"{outside},,\n")
    listed = scoring.images_in(manifest)
    assert [(i.path, i.label) for i in listed] == [(outside, "cat;dog"), (folder / "sub" / "missing.jpg", "cat"),
                                                  (outside, None)]
    rows = list(scoring.score(engine, listed))
    assert [r.problem is None for r in rows] == [True, False, True]
    assert rows[1].prediction is None
    assert "missing.jpg" in str(rows[1].problem)


def test_decoding_overlaps_the_model(engine: PredictionEngine, folder: Path, monkeypatch: pytest.MonkeyPatch):
    """The model's first batch waits until an image of the next batch has been decoded: without decoding
    running beside the model this would never happen (and the wait would time out)."""
    images = [scoring.Image(p) for p in _images(folder) if p.name != "notes.jpg"][:12]
    next_batch_decoded, threads = threading.Event(), set()
    original = scoring.preprocess

    def decode(path, spec):
        threads.add(threading.current_thread().name)
        if Path(path) in {i.path for i in images[4:]}:
            next_batch_decoded.set()
        return original(path, spec)

    class Waiting(PredictionEngine):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            assert next_batch_decoded.wait(60), "no image of the next batch was decoded while the model ran"
            return super().predict_proba(batch)

    monkeypatch.setattr(scoring, "preprocess", decode)
    waiting = Waiting(engine._package, engine._session)
    rows = list(scoring.score(waiting, images, batch_size=4, workers=2))
    assert [r.image for r in rows] == images
    assert all(r.prediction == engine.predict(r.image.path).prediction for r in rows)
    assert threading.current_thread().name not in threads
    assert all(name.startswith("decode") for name in threads)


def test_a_model_named_by_run_id_or_path(services: Services, trained: TrainedRun, folder: Path):
    run_id = make_completed_run(services, trained)
    assert model_file(services, run_id) == services.artifacts.run_dir(run_id) / ZIP_FILE
    assert load_engine(services, str(trained.folder / ZIP_FILE)).labels == ["cat", "dog"]
    with pytest.raises(InvalidInput, match="neither a run id, a registered model nor an existing file") as bad:
        model_file(services, "no-such-model.zip")
    assert "MLModel.zip" in bad.value.hint
    with pytest.raises(NotFound):
        model_file(services, "run-000000000000")


def test_mistakes_get_one_line_and_the_fix(engine: PredictionEngine, folder: Path, tmp_path: Path):
    cases = [
        (lambda: scoring.check_output(tmp_path / "scores.txt"), InvalidInput, "neither .csv nor .jsonl"),
        (lambda: scoring.check_output(_empty(tmp_path / "dir.csv")), InvalidInput, "is a folder"),
        (lambda: scoring.images_in(tmp_path / "missing"), InvalidInput, "does not exist"),
        (lambda: scoring.images_in(_empty(tmp_path / "empty")), InvalidInput, "holds no files"),
        (lambda: scoring.images_in(_write(tmp_path / "m.csv", "Path,Label\na.jpg,cat\n")), DataError,
         "^Line 1 .* lacks the column ImageSource "),
        (lambda: scoring.images_in(_write(tmp_path / "m.jsonl", '{"image_url": "a.jpg"}\n[1]\n')), DataError,
         "^Line 2 .* is not a JSON object"),
        (lambda: scoring.images_in(_write(tmp_path / "n.jsonl", "\n")), DataError, "lists no images"),
        (lambda: scoring.score(engine, [], batch_size=0), InvalidInput, "batch_size must be a positive whole number"),
        (lambda: scoring.score(engine, [], workers=1000), InvalidInput, "workers 1000 is too large"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind, match=words) as error:
            call()
        assert "\n" not in error.value.message
        assert error.value.hint
    with pytest.raises(InvalidInput, match="batch_size"):
        scoring.score_to_file(engine, scoring.images_in(folder), tmp_path / "never.csv", batch_size=0)
    assert not (tmp_path / "never.csv").exists()


def _empty(path: Path) -> Path:
    path.mkdir()
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_model_scores_a_folder_through_the_sdk(services: Services, trained: TrainedRun, folder: Path,
                                                 tmp_path: Path):
    model = Model(make_completed_run(services, trained), services=services)
    summary = model.score(folder, tmp_path / "scores.jsonl", batch_size=8)
    assert summary.images == len(_images(folder))
    assert len(summary.output.read_text().splitlines()) == summary.images
    assert model.predict(_images(folder)[0]).prediction in model.labels
    with pytest.raises(InvalidInput, match="neither .csv nor .jsonl"):
        model.score(folder, tmp_path / "scores.xlsx")
