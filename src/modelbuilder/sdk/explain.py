"""Explanations of one prediction (heatmaps of where a run's network finds a label, `training.explain`),
written once for `modelbuilder predict MODEL IMAGE --explain out/`, `Run.explain(...)` and
`POST /api/v1/runs/{id}/explain` (the portal's "try the model" box).

They need the PyTorch weights of the run that trained the model (its checkpoints/best.pt), which an
MLModel.zip does not carry: the model is named by its run (a run id, a registered model, whose versions
are runs, or the path of a run's folder or of the MLModel.zip in it). The generated <Name>.Model stays
torch-free and says where to get them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelbuilder.core import entities as e
from modelbuilder.core.services import Services
from modelbuilder.errors import Conflict, InvalidInput, NotFound, step
from modelbuilder.results.files import BEST_CHECKPOINT, CHECKPOINT_DIR, RECIPE_FILE, RESULT_MARKER
from modelbuilder.sdk.results import require_results

if TYPE_CHECKING:
    from modelbuilder.sdk.remote_models import ServerExplanation
    from modelbuilder.training.explain import Explanation

_NO_WEIGHTS = ("explanations need the PyTorch weights of the run that trained it ({checkpoint} in the run's "
               "folder), which an MLModel.zip does not carry")


def run_folder(model_path: Path, model: str) -> Path:
    """The folder of the run whose MLModel.zip (or folder) `model_path` is, if it holds the finished run's
    model, recipe and best checkpoint; else the reason and the fix. `model` is the name the user gave."""
    folder = model_path if model_path.is_dir() else model_path.parent
    if not (folder / RESULT_MARKER).is_file():
        if (folder / CHECKPOINT_DIR).is_dir():
            raise Conflict(f"The run in {str(folder)!r} has not finished: it has no {RESULT_MARKER} yet.",
                           "wait until the run is Completed, then explain with its id.")
        raise InvalidInput(f"{str(folder)!r} holds no {RESULT_MARKER}.",
                           "give a finished run's id, a registered model, or the path of a run's MLModel.zip.")
    if not ((folder / BEST_CHECKPOINT).is_file() and (folder / RECIPE_FILE).is_file()):
        raise NotFound(f"Model {model!r} cannot be explained: {_NO_WEIGHTS.format(checkpoint=BEST_CHECKPOINT)}.",
                       "give the id of the run that trained it ({runs}), on the host where it trained.",
                       {"runs": step("list_runs")})
    return folder


def explain_folder(folder: Path, image: Any, label: str | None = None) -> Explanation:
    """The explanation of `image` (a path, bytes, a PIL image or an array) by the run in `folder`, for
    `label` (default: the prediction). A label the model does not have is refused before any work."""
    # Deliberately here: explanations need torch and Captum (about 2 s of imports), which no other step
    # of the application layer needs; every command of the CLI imports this module.
    from modelbuilder.training.explain import Explainer

    if isinstance(image, str | Path) and Path(image).is_dir():
        raise InvalidInput(f"{str(image)!r} is a folder: an explanation is of one image.", "give one image file.")
    explainer = Explainer.load(folder)
    if label is not None and label not in explainer.labels:
        raise InvalidInput(f"The model has no label {label!r}.", f"use one of: {', '.join(explainer.labels)[:300]}.")
    return explainer.explain(image, label)


def explain_run(services: Services, run: e.Run, image: Any, *, label: str | None = None) -> Explanation:
    """Explain `image` with a finished run's model (409 before it has results)."""
    return explain_folder(run_folder(require_results(services, run), run.id), image, label)


def overlay_name(stem: str, method: str) -> str:
    """The file an overlay is written to: photo.gradcam.png, photo.integrated_gradients.png."""
    return f"{stem}.{method}.png"


def overlay_folder(folder: str | Path) -> Path:
    """`folder`, if overlays can be written there (it is a folder or does not exist yet)."""
    target = Path(folder).expanduser()
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{str(target)!r} is a file, not a folder.", "give a folder to write the overlays into.")
    return target


def write_overlays(explanation: Explanation | ServerExplanation, folder: str | Path, stem: str) -> list[Path]:
    """Each method's overlay (a PNG of the image's size) into `folder`, made if missing."""
    target = overlay_folder(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for method, png in explanation.overlays.items():
        path = target / overlay_name(stem, method)
        path.write_bytes(png)
        written.append(path)
    return written
