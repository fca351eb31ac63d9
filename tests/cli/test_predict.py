"""`modelbuilder predict` (table, json, csv) and `modelbuilder demo-data`."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from modelbuilder.core.services import Services
from modelbuilder.training.engine import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
from tests.completed import make_completed_run
from tests.imagery import make_image_folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = make_image_folder(root / "pets", per_label=8)
    result = run_training(TrainConfig(data=str(data), architecture="tiny", weights="none", image_size=32, epochs=2,
                                      batch_size=4), root / "run", MemoryReporter(), cache_root=root / "cache")
    return result.outputs["zip"], data


def test_predict_one_image_in_every_format(cli, model):
    zip_path, data = model
    image = sorted((data / "dog").iterdir())[0]
    table = cli("predict", str(zip_path), str(image))
    assert table.code == 0
    assert image.name in table.stdout
    one = json.loads(cli("predict", str(zip_path), str(image), "--format", "json").stdout)
    assert one["prediction"] in ("cat", "dog")
    assert sum(one["score"].values()) == pytest.approx(1.0)
    rows = list(csv.reader(io.StringIO(cli("predict", str(zip_path), str(image), "--format", "csv").stdout)))
    assert rows[0] == ["image", "prediction", "cat", "dog", "error"]
    assert rows[1][1] == one["prediction"]


def test_predict_a_folder(cli, model):
    zip_path, data = model
    rows = json.loads(cli("predict", str(zip_path), str(data), "--format", "json").stdout)
    assert len(rows) == 16
    assert all(r["prediction"] in ("cat", "dog") for r in rows)


def test_predict_mistakes_are_one_line(cli, model, tmp_path):
    zip_path, data = model
    missing = cli("predict", str(zip_path), str(tmp_path / "nope.png"))
    missing.user_error("does not exist")
    not_a_model = tmp_path / "model.zip"
    not_a_model.write_bytes(b"PK not really")
    cli("predict", str(not_a_model), str(data)).user_error("model.zip")


def test_demo_data_writes_the_digits(cli, tmp_path):
    result = cli("demo-data", "digits", str(tmp_path / "digits"))
    assert result.code == 0
    assert "1797 images in 10 label folders" in result.stdout
    assert len(list((tmp_path / "digits").glob("*/*.png"))) == 1797
    again = cli("demo-data", "digits", str(tmp_path / "digits"))  # idempotent on the same folder
    assert again.code == 0
    cli("demo-data", "faces", str(tmp_path / "x")).user_error("Unknown demo data set")


def test_a_folder_always_gives_a_list_in_json_even_with_one_image(cli, model, tmp_path):
    zip_path, data = model
    folder = tmp_path / "one"
    folder.mkdir()
    image = sorted((data / "cat").iterdir())[0]
    (folder / image.name).write_bytes(image.read_bytes())
    rows = json.loads(cli("predict", str(zip_path), str(folder), "--format", "json").stdout)
    assert isinstance(rows, list)
    assert [row["image"] for row in rows] == [str(folder / image.name)]
    single = json.loads(cli("predict", str(zip_path), str(folder / image.name), "--format", "json").stdout)
    assert single == rows[0]  # an image file (not a folder) gives the object alone


def test_batch_scoring_into_a_file_prints_the_throughput(cli, model, tmp_path):
    zip_path, data = model
    result = cli("predict", str(zip_path), str(data), "--output", str(tmp_path / "scores.csv"), "--batch-size", "5")
    assert result.code == 0, result.stderr
    said = " ".join(result.stdout.split())
    assert re.search(r"Scored 16 images in [0-9.]+ s: [0-9.]+ images/s\. Wrote .*scores\.csv", said), said
    with (tmp_path / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    assert {r["prediction"] for r in rows} <= {"cat", "dog"}
    jsonl = cli("predict", str(zip_path), str(data), "-o", str(tmp_path / "scores.jsonl"))
    assert jsonl.code == 0, jsonl.stderr
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 16


def test_batch_scoring_by_run_id(cli, trained, tmp_path):
    with Services() as services:
        run_id = make_completed_run(services, trained)
    result = cli("predict", run_id, str(trained.data), "--output", str(tmp_path / "scores.jsonl"))
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    assert {r["prediction"] for r in rows} <= {"cat", "dog"}


def test_batch_scoring_mistakes_are_one_line(cli, model, tmp_path):
    zip_path, data = model
    cli("predict", str(zip_path), str(data), "--output", str(tmp_path / "scores.txt")).user_error(
        "neither .csv nor .jsonl")
    cli("predict", "nope", str(data)).user_error("neither a run id, a registered model nor an existing file")
    cli("predict", str(zip_path), str(data), "-o", str(tmp_path / "s.csv"), "--batch-size", "0").user_error(
        "batch_size must be a positive whole number")
    assert not (tmp_path / "s.csv").exists()
