"""Compute backends: where a run's worker really runs. Importing this registers their launchers."""

from __future__ import annotations

from modelbuilder.backends import local  # noqa: F401 - registers the "local" launcher
from modelbuilder.core.scheduler import Agent
from modelbuilder.core.store import Store


def start_agent(store: Store, kinds: tuple[str, ...] = ("local",), poll_s: float = 1.0) -> Agent:
    """An agent serving these compute kinds, already running in a background thread."""
    return Agent(store, kinds=kinds, poll_s=poll_s).start()
