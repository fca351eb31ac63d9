"""How the training engine talks to whoever runs it, without knowing who that is.

The engine calls a `Reporter`; the control plane supplies one that writes to the store, the CLI one
that draws progress bars, tests one that records in memory. `should_stop()` is polled every step so a
cancel or a preemption is noticed within one step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

StopReason = Literal["cancel", "preempt"]


@dataclass(frozen=True)
class Progress:
    phase: str  # "preparing" | "training" | "evaluating" | "exporting"
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based step within the epoch
    steps: int
    loss: float | None = None
    accuracy: float | None = None  # running training accuracy of this epoch
    images_per_s: float | None = None
    eta_s: float | None = None


class Reporter(Protocol):
    def status(self, status: str, reason: str = "") -> None: ...

    def log(self, message: str, level: str = "info") -> None: ...

    def progress(self, progress: Progress) -> None: ...

    def metrics(self, epoch: int, values: dict[str, float]) -> None: ...

    def checkpoint(self, path: Path, epoch: int, step: int) -> None: ...

    def should_stop(self) -> StopReason | None: ...


class NullReporter:
    """Reports nothing and never asks to stop."""

    def status(self, status: str, reason: str = "") -> None:
        pass

    def log(self, message: str, level: str = "info") -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        pass

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        pass

    def should_stop(self) -> StopReason | None:
        return None


@dataclass
class MemoryReporter:
    """Records every call; `stop_after_steps` asks to stop once that many steps were reported."""

    statuses: list[tuple[str, str]] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    progresses: list[Progress] = field(default_factory=list)
    epoch_metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    checkpoints: list[tuple[Path, int, int]] = field(default_factory=list)
    stop_after_steps: int | None = None
    stop_reason: StopReason = "cancel"
    started: float = field(default_factory=time.monotonic)

    def status(self, status: str, reason: str = "") -> None:
        self.statuses.append((status, reason))

    def log(self, message: str, level: str = "info") -> None:
        self.logs.append((level, message))

    def progress(self, progress: Progress) -> None:
        self.progresses.append(progress)

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        self.epoch_metrics.append((epoch, dict(values)))

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        self.checkpoints.append((path, epoch, step))

    def should_stop(self) -> StopReason | None:
        steps = sum(1 for p in self.progresses if p.phase == "training")
        if self.stop_after_steps is not None and steps >= self.stop_after_steps:
            return self.stop_reason
        return None

    def messages(self) -> list[str]:
        return [m for _, m in self.logs]


class FanOutReporter:
    """Sends every call to several reporters; stops when any of them asks to."""

    def __init__(self, *reporters: Any) -> None:
        self.reporters = reporters

    def status(self, status: str, reason: str = "") -> None:
        for r in self.reporters:
            r.status(status, reason)

    def log(self, message: str, level: str = "info") -> None:
        for r in self.reporters:
            r.log(message, level)

    def progress(self, progress: Progress) -> None:
        for r in self.reporters:
            r.progress(progress)

    def metrics(self, epoch: int, values: dict[str, float]) -> None:
        for r in self.reporters:
            r.metrics(epoch, values)

    def checkpoint(self, path: Path, epoch: int, step: int) -> None:
        for r in self.reporters:
            r.checkpoint(path, epoch, step)

    def should_stop(self) -> StopReason | None:
        for r in self.reporters:
            reason = r.should_stop()
            if reason:
                return reason
        return None
