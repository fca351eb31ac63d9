"""The recipe: durations in a recipe file or dict are read the way `--time-budget` reads them."""

from __future__ import annotations

import pytest

from modelbuilder.errors import InvalidInput
from modelbuilder.training.engine import run_training
from modelbuilder.training.recipe import TrainConfig
from modelbuilder.training.reporter import MemoryReporter


@pytest.mark.parametrize(("given", "seconds"), [("10m", 600.0), ("1h30m", 5400.0), ("90s", 90.0), ("45", 45.0),
                                                (120, 120.0), (2.5, 2.5)])
def test_a_time_budget_is_seconds_whatever_way_it_was_written(given, seconds):
    recipe = TrainConfig.from_dict({"data": "pets", "time_budget_s": given})
    assert recipe.time_budget_s == seconds
    assert isinstance(recipe.time_budget_s, float)
    assert TrainConfig.from_dict(recipe.to_dict()) == recipe  # what is stored reads back the same


@pytest.mark.parametrize("given", ["soon", "-5m", "0", ""])
def test_a_time_budget_that_is_no_duration_is_refused(given):
    with pytest.raises(InvalidInput, match="Duration"):
        TrainConfig(data="pets", time_budget_s=given)


def test_a_budget_written_as_a_duration_trains_instead_of_crashing(image_folder, tmp_path, home):
    data = image_folder(per_label=6)
    recipe = TrainConfig.from_dict({"data": str(data), "architecture": "tiny", "weights": "none", "image_size": 32,
                                    "epochs": 1, "batch_size": 4, "time_budget_s": "10m"})
    result = run_training(recipe, tmp_path / "run", MemoryReporter(), cache_root=tmp_path / "cache")
    assert result.stopped == "completed"
