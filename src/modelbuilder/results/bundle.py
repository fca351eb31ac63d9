"""The result of a run as a user gets it: the generated projects and the three assets."""

from __future__ import annotations

import shutil
from pathlib import Path

from modelbuilder.results.files import result_paths


def copy_results(run_dir: Path, name: str, output: Path) -> dict[str, Path]:
    """Put `<name>.ConsoleApp`, `<name>.Model`, `<name>.WebApi` and the three assets of a finished run into
    `output`."""
    output.mkdir(parents=True, exist_ok=True)
    placed: dict[str, Path] = {}
    for item in result_paths(name):
        source, target = run_dir / item, output / item
        if source.is_dir():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
        placed[item] = target
    return placed
