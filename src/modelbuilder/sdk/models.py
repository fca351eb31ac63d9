"""Which model a command means: a run id, an MLModel.zip (or its folder), or a registered model, and
the SDK's `Model`, which predicts and scores with it.

`modelbuilder predict`, `modelbuilder serve` and the SDK name a model the same way; `model_file`
turns the name into the MLModel.zip to load.

    from modelbuilder.sdk import Model

    model = Model("run-0123456789ab")                # or Model("out/MLModel.zip")
    print(model.predict("photo.jpg").prediction)
    summary = model.score("new-photos/", "scores.csv")
    print(summary.images, summary.images_per_s)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from modelbuilder.core.entities import RUN_ID
from modelbuilder.core.services import Services
from modelbuilder.errors import InvalidInput
from modelbuilder.results.files import ZIP_FILE
from modelbuilder.results.runtime import ModelOutput, PredictionEngine
from modelbuilder.sdk import scoring
from modelbuilder.sdk.objects import default_services
from modelbuilder.sdk.results import require_results

MODEL_HELP = "a run id (run-0123456789ab), or the path of an MLModel.zip (or of a folder holding its three files)"


def model_file(services: Services, model: str) -> Path:
    """The MLModel.zip (or folder) that `model` names; the store is opened only for a run id."""
    if RUN_ID.fullmatch(model):
        return require_results(services, services.runs.get(model)) / ZIP_FILE
    path = Path(model).expanduser()
    if path.exists():
        return path
    raise InvalidInput(f"Model {model!r} is neither a run id nor an existing file.", f"give {MODEL_HELP}.")


def load_engine(services: Services, model: str) -> PredictionEngine:
    return PredictionEngine.load(model_file(services, model))


class Model:
    """A trained model to predict with, named as `modelbuilder predict` names one (see MODEL_HELP)."""

    def __init__(self, model: str, *, services: Services | None = None) -> None:
        self.services = services or default_services()
        self.path = model_file(self.services, model)
        self.name = model

    @cached_property
    def engine(self) -> PredictionEngine:
        return PredictionEngine.load(self.path)

    @property
    def labels(self) -> list[str]:
        return self.engine.labels

    def predict(self, image: Any) -> ModelOutput:
        """One image: a path, bytes, a PIL image or a numpy array."""
        return self.engine.predict(image)

    def score(self, images: str | Path, output: str | Path, *, batch_size: int = scoring.BATCH_SIZE,
              workers: int | None = None) -> scoring.ScoringSummary:
        """Every image of a folder or manifest into `output` (.csv or .jsonl), one row each, decoded on
        `workers` threads while the model runs; the summary says how many and how fast (images_per_s)."""
        scoring.check_output(output)
        return scoring.score_to_file(self.engine, scoring.images_in(images), output, batch_size=batch_size,
                                     workers=workers)

    def __repr__(self) -> str:
        return f"Model({self.name!r})"
