"""`modelbuilder predict` (table, json, csv) and `modelbuilder demo-data`."""

from __future__ import annotations

import csv
import io
import json

import pytest

from modelbuilder.training.engine import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter
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
