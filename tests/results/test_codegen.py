"""The generated <Name>.Model and <Name>.ConsoleApp: their files, that they run, and that they lint."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from modelbuilder.errors import AlreadyExists, InvalidInput
from modelbuilder.results import runtime
from modelbuilder.results.codegen import GeneratedProjects, generate_projects, package_name

from .helpers import LABELS, PYTHON, subprocess_env

NAME = "PetClassifier"
PACKAGE = "pet_classifier_model"


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory, mlmodel_zip: Path, dataset) -> GeneratedProjects:
    return generate_projects(NAME, tmp_path_factory.mktemp("generated"), mlmodel_zip, dataset[0][0])


def run_python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    env.pop("PYTHONPATH")  # generated code must not need modelbuilder
    return subprocess.run([PYTHON, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_package_names():
    assert package_name("PetClassifier") == "pet_classifier_model"
    assert package_name("MyHTTPModel") == "my_http_model_model"
    assert package_name("Pets_v2") == "pets_v2_model"
    assert package_name("A") == "a_model"


def test_generated_files(generated: GeneratedProjects, mlmodel_zip: Path):
    assert generated.model.name == "PetClassifier.Model"
    assert generated.console_app.name == "PetClassifier.ConsoleApp"
    package = generated.model / PACKAGE
    assert sorted(p.name for p in package.iterdir()) == sorted([
        "__init__.py", "_runtime.py", "consume_model.py", "model_input.py", "model_output.py",
        "MLModel.zip", "bestModel.onnx", "bestModelMap.json"])
    assert (package / "_runtime.py").read_text() == Path(runtime.__file__).read_text()
    assert (package / "MLModel.zip").read_bytes() == mlmodel_zip.read_bytes()
    with zipfile.ZipFile(mlmodel_zip) as archive:
        assert (package / "bestModel.onnx").read_bytes() == archive.read("bestModel.onnx")
    assert json.loads((package / "bestModelMap.json").read_text()) == LABELS
    assert sorted(p.name for p in generated.console_app.iterdir()) == [
        "README.md", "main.py", "requirements.txt", "sample.png"]

    pyproject = tomllib.loads((generated.model / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "petclassifier-model"
    assert pyproject["project"]["dependencies"] == ["onnxruntime>=1.17", "numpy>=1.24", "Pillow>=10.0"]
    assert pyproject["tool"]["setuptools"]["package-data"][PACKAGE] == [
        "MLModel.zip", "bestModel.onnx", "bestModelMap.json"]
    readme = (generated.model / "README.md").read_text()
    assert "0. cat" in readme
    assert "| accuracy | 0.9167 |" in readme
    assert "onnxruntime>=1.17" in (generated.console_app / "requirements.txt").read_text()
    assert "pip install -e ../PetClassifier.Model" in (generated.console_app / "requirements.txt").read_text()
    assert sorted(p.name for p in generated.web_api.iterdir()) == ["Dockerfile", "README.md", "main.py",
                                                                    "requirements.txt"]
    assert pyproject["project"]["version"] == "1.0.0"


def _table(stdout: str) -> tuple[str, list[tuple[str, float]]]:
    lines = stdout.splitlines()
    assert lines[0].startswith("Predicted label: ")
    assert lines[1] == ""
    assert lines[2].split() == ["Label", "Score"]
    rows = [(line.split()[0], float(line.split()[1])) for line in lines[3:]]
    return lines[0].removeprefix("Predicted label: "), rows


def test_console_app_predicts_the_sample(generated: GeneratedProjects, engine, dataset):
    done = run_python(["main.py"], generated.console_app)
    assert done.returncode == 0, done.stderr
    prediction, rows = _table(done.stdout)
    expected = engine.predict(dataset[0][0])
    assert prediction == expected.prediction
    assert sorted(label for label, _ in rows) == sorted(LABELS)
    assert [score for _, score in rows] == sorted((score for _, score in rows), reverse=True)
    for label, score in rows:
        assert score == pytest.approx(expected.score[LABELS.index(label)], abs=5e-5)
    table = done.stdout.splitlines()[2:]
    assert len({line.index(line.split()[1], len(line.split()[0])) for line in table}) == 1  # aligned


def test_console_app_predicts_a_given_image(generated: GeneratedProjects, engine, dataset):
    image = next(path for path, label in dataset if label == "fish")
    done = run_python(["main.py", str(image)], generated.console_app)
    assert done.returncode == 0, done.stderr
    assert _table(done.stdout)[0] == engine.predict(image).prediction


@pytest.mark.parametrize(("image", "reason"), [("missing.jpg", "file not found"), ("text", "not an image")])
def test_console_app_bad_path_exits_2_with_one_line(generated: GeneratedProjects, images, image, reason):
    path = str(images["text.jpg"]) if image == "text" else image
    done = run_python(["main.py", path], generated.console_app)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert reason in done.stderr


def test_generated_package_imports_and_predicts_without_torch(generated: GeneratedProjects, engine, dataset):
    image = str(dataset[5][0])
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(generated.model)!r})\n"
        f"import {PACKAGE} as model\n"
        f"out = model.predict(model.ModelInput(image_source={image!r}))\n"
        f"batch = model.predict_batch([model.ModelInput(image_source={image!r})] * 3)\n"
        "assert all(b == out for b in batch)\n"
        "assert 'torch' not in sys.modules and 'modelbuilder' not in sys.modules, 'heavy import'\n"
        "print(json.dumps({'prediction': out.prediction, 'score': out.score, 'labels': model.labels()}))\n"
    )
    done = run_python(["-c", script], generated.model)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = engine.predict(image)
    assert result["labels"] == LABELS
    assert result["prediction"] == expected.prediction
    assert result["score"] == pytest.approx(expected.score, abs=1e-6)


def test_generated_code_passes_ruff(generated: GeneratedProjects):
    ruff = shutil.which("ruff", path=str(Path(PYTHON).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [ruff, "check", "--no-cache", "--isolated", "--select", "E,F,I,B,UP,C4", "--line-length", "110",
         "--target-version", "py310", str(generated.model), str(generated.console_app), str(generated.web_api)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="setuptools is not installed")
def test_model_project_builds_a_wheel_with_its_assets(generated: GeneratedProjects, tmp_path: Path):
    source = shutil.copytree(generated.model, tmp_path / "src")
    done = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(source)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for member in ("_runtime.py", "consume_model.py", "MLModel.zip", "bestModel.onnx", "bestModelMap.json"):
        assert f"{PACKAGE}/{member}" in names


@pytest.mark.parametrize("name", ["1Model", "my-model", "", "a" * 65, "Pet Classifier"])
def test_invalid_names_are_refused(tmp_path: Path, mlmodel_zip: Path, name: str):
    with pytest.raises(InvalidInput, match="Model name"):
        generate_projects(name, tmp_path, mlmodel_zip)
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused(tmp_path: Path, mlmodel_zip: Path, images):
    with pytest.raises(InvalidInput, match="does not exist"):
        generate_projects(NAME, tmp_path / "out", tmp_path / "missing.zip")
    with pytest.raises(InvalidInput, match="not a readable zip"):
        generate_projects(NAME, tmp_path / "out", images["text.jpg"])
    with pytest.raises(InvalidInput, match="not an image"):
        generate_projects(NAME, tmp_path / "out", mlmodel_zip, images["text.jpg"])
    assert not (tmp_path / "out").exists()


def test_existing_projects_are_kept_unless_overwrite(tmp_path: Path, mlmodel_zip: Path, images):
    first = generate_projects("Pets", tmp_path, mlmodel_zip, images["photo.jpg"])
    (first.model / "my_notes.txt").write_text("mine")
    with pytest.raises(AlreadyExists, match="Pets.Model and Pets.ConsoleApp and Pets.WebApi already exist"):
        generate_projects("Pets", tmp_path, mlmodel_zip)
    assert (first.model / "my_notes.txt").exists()

    second = generate_projects("Pets", tmp_path, mlmodel_zip, overwrite=True)
    assert second == first
    assert not (second.model / "my_notes.txt").exists()
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["Pets.ConsoleApp", "Pets.Model", "Pets.WebApi"]
    assert not (second.console_app / "sample.jpg").exists()  # this time generated without a sample

    done = run_python(["main.py"], second.console_app)
    assert done.returncode == 2
    assert "usage: python main.py IMAGE" in done.stderr
    done = run_python(["main.py", str(images["photo.jpg"])], second.console_app)
    assert done.returncode == 0, done.stderr
