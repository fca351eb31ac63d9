"""The names of the files a run leaves in its folder, defined once for every layer that reads or writes them.

`MODEL_FILE` and `MAP_FILE` are defined in `runtime.py`, which must stay self-contained (it is copied
into every generated `<Name>.Model`); they are re-exported here so nothing else spells them.
"""

from __future__ import annotations

from modelbuilder.results.runtime import MAP_FILE, MODEL_FILE

ZIP_FILE = "MLModel.zip"
RESULT_FILES = (MODEL_FILE, MAP_FILE, ZIP_FILE)  # the three assets a user gets back
RESULT_MARKER = ZIP_FILE  # written last by the engine: a run folder holding it has its whole result
INT8_MODEL_FILE, INT8_ZIP_FILE = "bestModel.int8.onnx", "MLModel.int8.zip"
METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.json"
DATA_REPORT_FILE = "data_report.json"
PREDICTIONS_FILE = "predictions.csv"  # every validation image: its true label, prediction and scores
THUMBNAILS_FILE = "thumbnails.zip"  # small JPEGs of the validation images and the label suspects, by index
CHECKPOINT_DIR = "checkpoints"  # last.pt (to resume from) and best.pt (the best epoch's weights)
BEST_CHECKPOINT = f"{CHECKPOINT_DIR}/best.pt"  # the weights that were exported, which explanations need
LOGS = "logs"  # the workers' own output: a diagnostic, still growing while the run runs, never a result


def project_folders(name: str) -> tuple[str, str, str]:
    """The generated projects of a result named `name`: `<Name>.ConsoleApp`, `<Name>.Model`, `<Name>.WebApi`."""
    return f"{name}.ConsoleApp", f"{name}.Model", f"{name}.WebApi"


def worker_log(attempt: int) -> str:
    """The log file of one attempt's worker process."""
    return f"{LOGS}/worker-{attempt}.log"


def result_paths(name: str) -> tuple[str, ...]:
    """Everything a user gets back from a run, relative to its folder."""
    return (*project_folders(name), *RESULT_FILES)


__all__ = ["BEST_CHECKPOINT", "CHECKPOINT_DIR", "DATA_REPORT_FILE", "INT8_MODEL_FILE", "INT8_ZIP_FILE", "LOGS",
           "MAP_FILE", "METRICS_FILE", "MODEL_FILE", "PREDICTIONS_FILE", "RECIPE_FILE", "RESULT_FILES", "RESULT_MARKER",
           "THUMBNAILS_FILE", "ZIP_FILE", "project_folders", "result_paths", "worker_log"]
