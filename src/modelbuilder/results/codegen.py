"""Write the two generated projects of a result: `<Name>.Model` and `<Name>.ConsoleApp`.

`<Name>.Model` is an installable package (`<name>_model`) holding the ModelInput/ModelOutput schema,
`predict()`, the three assets and a verbatim copy of `runtime.py` as `_runtime.py`, so it needs only
onnxruntime, numpy and Pillow. `<Name>.ConsoleApp` is starter code that classifies one image with it.
Both come from the Jinja template files under `templates/`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from modelbuilder import names
from modelbuilder.errors import AlreadyExists, InvalidInput
from modelbuilder.results import runtime
from modelbuilder.results.files import ZIP_FILE, project_folders

TEMPLATES = Path(__file__).parent / "templates"
REQUIREMENTS = ("onnxruntime>=1.17", "numpy>=1.24", "Pillow>=10.0")
ASSETS = (ZIP_FILE, runtime.MODEL_FILE, runtime.MAP_FILE)  # in the order the generated README lists them


@dataclass(frozen=True)
class GeneratedProjects:
    console_app: Path
    model: Path


def package_name(name: str) -> str:
    """'PetClassifier' -> 'pet_classifier_model', 'MyHTTPModel' -> 'my_http_model_model'."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", names.project_name(name))
    return re.sub(r"_+", "_", snake.lower()).strip("_") + "_model"


def _markdown(text: Any) -> str:
    return re.sub(r"([\\`*_{}\[\]<>|#])", r"\\\1", str(text))


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The top-level numbers and words of the metrics, for the README (nested ones stay in pipeline.json)."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, bool | str):
            rows.append((key, _markdown(value)))
        elif isinstance(value, int):
            rows.append((key, str(value)))
        elif isinstance(value, float):
            rows.append((key, f"{value:.4f}"))
    return rows


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["pyrepr"] = repr
    env.filters["md"] = _markdown
    env.filters["toml"] = lambda text: json.dumps(str(text), ensure_ascii=False)  # a TOML basic string
    return env


def _render_tree(env: jinja2.Environment, template_dir: str, target: Path, context: dict[str, Any]) -> None:
    """Render every `*.j2` under templates/<template_dir>; a folder named `package` becomes the package."""
    for source in sorted((TEMPLATES / template_dir).rglob("*.j2")):
        relative = source.relative_to(TEMPLATES / template_dir)
        parts = [context["package"] if part == "package" else part for part in relative.parts]
        out = target.joinpath(*parts).with_suffix("")  # drop .j2
        out.parent.mkdir(parents=True, exist_ok=True)
        template = env.get_template(f"{template_dir}/{relative.as_posix()}")
        out.write_text(template.render(context), encoding="utf-8")


def _checked_inputs(mlmodel_zip: Path, sample_image: Path | None) -> runtime.ModelPackage:
    if not mlmodel_zip.is_file():
        raise InvalidInput(f"MLModel.zip {str(mlmodel_zip)!r} does not exist or is not a file.",
                           "pass the MLModel.zip written by a training run.")
    try:
        package = runtime.read_model_package(mlmodel_zip)
        if sample_image is not None:
            runtime.load_image(sample_image)
    except runtime.PipelineError as exc:
        raise InvalidInput(exc.message, exc.hint) from None
    return package


def _sample_file(sample_image: Path) -> str:
    suffix = sample_image.suffix.lower()
    return f"sample{suffix}" if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else "sample.png"


def _swap_in(new: Path, target: Path, trash: Path) -> None:
    """Replace `target` by `new` with two renames; on failure the old folder is put back."""
    old = None
    if target.exists():
        old = trash / f"{target.name}.old"
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise


def generate_projects(name: str, output_dir: str | os.PathLike[str], mlmodel_zip: str | os.PathLike[str],
                      sample_image: str | os.PathLike[str] | None = None, *,
                      overwrite: bool = False) -> GeneratedProjects:
    """Write `<Name>.Model` and `<Name>.ConsoleApp` into `output_dir` from an MLModel.zip.

    Existing projects are replaced only with `overwrite=True`; the new ones are written to a hidden
    folder beside them first, so a failure never leaves half a project behind.
    """
    names.project_name(name)
    output_dir, mlmodel_zip = Path(output_dir), Path(mlmodel_zip)
    sample = Path(sample_image) if sample_image is not None else None
    package = _checked_inputs(mlmodel_zip, sample)
    console_app, model = project_folders(name)
    result = GeneratedProjects(console_app=output_dir / console_app, model=output_dir / model)
    existing = [p.name for p in (result.model, result.console_app) if p.exists()]
    if existing and not overwrite:
        raise AlreadyExists(f"{' and '.join(existing)} already exist in {str(output_dir)!r}.",
                            "pass overwrite=True (--force) to replace them, or choose another output folder.")

    package_dir = package_name(name)
    context = {
        "name": name,
        "package": package_dir,
        "dist_name": f"{name.lower()}-model",
        "model_dir": result.model.name,
        "labels": package.labels,
        "metrics": _metric_rows(package.pipeline.get("metrics") or {}),
        "preprocess": package.preprocess,
        "format": runtime.FORMAT,
        "requirements": REQUIREMENTS,
        "assets": ASSETS,
        "sample_file": _sample_file(sample) if sample is not None else None,
    }
    env = _environment()
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.generating-", dir=output_dir))
    try:
        model_dir, console_dir = staging / result.model.name, staging / result.console_app.name
        _render_tree(env, "model", model_dir, context)
        assets = model_dir / package_dir
        shutil.copyfile(Path(runtime.__file__), assets / "_runtime.py")
        shutil.copyfile(mlmodel_zip, assets / ZIP_FILE)
        (assets / runtime.MODEL_FILE).write_bytes(package.onnx)
        (assets / runtime.MAP_FILE).write_text(json.dumps(package.labels, indent=2, ensure_ascii=False),
                                               encoding="utf-8")

        _render_tree(env, "console_app", console_dir, context)
        if sample is not None:
            if context["sample_file"] == f"sample{sample.suffix.lower()}":
                shutil.copyfile(sample, console_dir / context["sample_file"])
            else:
                runtime.load_image(sample).save(console_dir / context["sample_file"])

        _swap_in(model_dir, result.model, staging)
        _swap_in(console_dir, result.console_app, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
