"""Rich rendering shared by the CLI commands: progress of a training, its summary, errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from modelbuilder.core.follow import RunEvent
from modelbuilder.training.reporter import Progress as TrainProgress
from modelbuilder.training.reporter import StopReason

# A run's log repeats each status change as a line ("Running: ..."); the display shows the change itself.
STATUS_LINES = ("Preparing:", "Running:", "Finalizing:")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, no traceback, exit code 2 (the user's mistake) by default."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    sys.exit(code)


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def print_summary(metrics: dict[str, Any], placed: dict[str, Path], stopped: str) -> None:
    """What a finished training reached, and where its results were put."""
    multilabel = metrics.get("task") == "multilabel"
    reached = (f"subset accuracy [bold]{metrics['accuracy']:.4f}[/], micro F1 {metrics['micro_f1']:.4f}, macro F1 "
               f"{metrics['macro_f1']:.4f}, mAP {metrics['mean_average_precision']:.4f}" if multilabel else
               f"validation accuracy [bold]{metrics['accuracy']:.4f}[/], macro F1 {metrics['macro_f1']:.4f}")
    console.print(
        f"\n[bold green]Done[/] ({stopped.replace('_', ' ')}): {reached}, best epoch {metrics['best_epoch']} of "
        f"{metrics['epochs_run']}, {metrics['images_per_s']:.0f} img/s, training time "
        f"{fmt_seconds(metrics['training_seconds'])}.", highlight=False)
    if multilabel:
        labels = Table("label", "threshold", "precision", "recall", "F1", "AP", "images", header_style="bold")
        for row in metrics["per_label"]:
            labels.add_row(row["label"], f"{row['threshold']:.3f}", f"{row['precision']:.3f}", f"{row['recall']:.3f}",
                           f"{row['f1']:.3f}", f"{row['average_precision']:.3f}", str(row["support"]))
        console.print(labels)
    table = Table("output", "where", show_header=True, header_style="bold")
    for key, path in placed.items():
        table.add_row(key, str(path))
    console.print(table)


def print_data_report(report: dict[str, Any]) -> None:
    """The data report's findings, one line each with its counts (a warning's fix after it)."""
    console.print("[bold]Data report[/]")
    for line in report.get("summary", []):
        mark = "[yellow]![/]" if line["level"] == "warning" else "[green]ok[/]"
        console.print(f"  {mark} {line['text']}" + (f" Fix: {line['fix']}" if line.get("fix") else ""),
                      highlight=False, soft_wrap=True)


class ProgressDisplay:
    """Draws a run's progress: one bar for decoding, one per epoch, with loss, accuracy, images/s, ETA.

    It is fed `training.reporter.Progress` objects, either by the engine directly (it is a Reporter)
    or through `show` by the CLI following the run's events from the store.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bars = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console, transient=False,
            disable=quiet)
        self.task: Any = None
        self.key: tuple[str, int] | None = None
        self.last_status = ""

    def __enter__(self) -> ProgressDisplay:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def show(self, event: RunEvent, logs: bool = True) -> None:
        """One event of a run followed from the store (`sdk.wait`)."""
        if event.kind == "status" and event.status is not None:
            self.status(event.status.status, event.status.reason)
        elif event.kind == "log" and event.log is not None and logs:
            if not event.log.message.startswith(STATUS_LINES):
                self.log(event.log.message, event.log.level)
        elif event.kind == "metrics" and event.epoch is not None:
            self.metrics(event.epoch, event.values)
        elif event.kind == "progress":
            fields = {k: v for k, v in event.progress.items() if k in TrainProgress.__dataclass_fields__}
            self.progress(TrainProgress(**fields))

    # --- Reporter ---------------------------------------------------------------------------------
    def status(self, status: str, reason: str = "") -> None:
        if status != self.last_status:
            self.last_status = status
            self.bars.console.print(f"[cyan]{status}[/] {reason}", highlight=False)

    def log(self, message: str, level: str = "info") -> None:
        style = {"warning": "yellow", "error": "red"}.get(level, "dim")
        prefix = "warning: " if level == "warning" else ""
        self.bars.console.print(f"[{style}]{prefix}{message}[/]", highlight=False, soft_wrap=True)

    def progress(self, p: TrainProgress) -> None:
        key = (p.phase, p.epoch)
        if p.phase == "preparing":
            description, total = "Decoding images", p.steps
        elif p.phase == "features":
            description, total = "Backbone features", p.steps
        elif p.phase == "training":
            description, total = f"Epoch {p.epoch}/{p.epochs}", p.steps
        else:
            return
        if key != self.key:
            self._complete()  # progress read from the store can skip an epoch's last step
            self.task = self.bars.add_task(description, total=total, stats="")
            self.key = key
        stats = ""
        if p.phase == "training":
            stats = (f"loss {p.loss:.3f}  acc {p.accuracy:.3f}  {p.images_per_s:.0f} img/s  "
                     f"ETA {fmt_seconds(p.eta_s)}")
        self.bars.update(self.task, completed=p.step, total=total, stats=stats)

    def _complete(self) -> None:
        if self.task is not None:
            task = next(t for t in self.bars.tasks if t.id == self.task)
            self.bars.update(self.task, completed=task.total)

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        if self.key == ("training", epoch):
            self._complete()
        self.bars.console.print(
            f"  epoch {epoch}: val accuracy [bold]{values.get('val_accuracy', float('nan')):.4f}[/], "
            f"val loss {values.get('val_loss', float('nan')):.4f}, train accuracy "
            f"{values.get('train_accuracy', float('nan')):.4f}", highlight=False)

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        pass

    def should_stop(self) -> StopReason | None:
        return None


def print_leaderboard(trials: list[Any]) -> None:
    """A sweep's trials, best first (`sdk.sweep.leaderboard`): accuracy, epochs, time, status and why it stopped,
    then each trial's settings."""
    table = Table("trial", "run", "accuracy", "epochs", "time", "status", "why it stopped", title="leaderboard")
    for trial in trials:
        table.add_row(f"{trial.number}{' *' if trial.best else ''}", trial.run_id,
                      f"{trial.accuracy:.4f}" if trial.accuracy is not None else "-",
                      f"{trial.epochs if trial.epochs is not None else '-'}/{trial.planned_epochs or '-'}",
                      fmt_seconds(trial.seconds), trial.status, trial.stopped)
    console.print(table)
    for trial in trials:
        settings = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in trial.settings.items())
        console.print(f"  trial {trial.number}: {settings}", highlight=False, soft_wrap=True)
