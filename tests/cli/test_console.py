"""The progress display: every bar ends full, even when progress read from the store skipped steps."""

from __future__ import annotations

from modelbuilder.cli.console import ProgressDisplay
from modelbuilder.training.reporter import Progress


def _bars(display: ProgressDisplay) -> list[tuple[str, float, float | None]]:
    return [(task.description, task.completed, task.total) for task in display.bars.tasks]


def test_an_epoch_whose_last_step_was_not_seen_still_ends_full():
    display = ProgressDisplay(quiet=True)
    with display:
        for epoch in (1, 2):
            display.progress(Progress("training", epoch, 3, 21, 23, loss=1.0, accuracy=0.5, images_per_s=40.0,
                                      eta_s=30.0))  # step 21 of 23 was the last one polled
            if epoch == 1:
                display.metrics(1, {"val_accuracy": 0.5, "val_loss": 1.0, "train_accuracy": 0.5})
        display.progress(Progress("training", 3, 3, 5, 23, loss=1.0, accuracy=0.5, images_per_s=40.0, eta_s=3.0))
    assert _bars(display) == [("Epoch 1/3", 23, 23), ("Epoch 2/3", 23, 23), ("Epoch 3/3", 5, 23)]
